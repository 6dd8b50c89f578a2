//! Garage, an S3-compatible object store, on loopback: one node (`s3_garage`) or a cluster of
//! three with replication factor 3 (`GarageCluster`) whose nodes a test stops and starts. Each
//! node has a generated `garage.toml` (LMDB metadata, its RPC, S3 and admin APIs on 127.0.0.1,
//! metadata and data in the temp dir); the layout is applied and one key given read, write and
//! owner rights on one bucket, with the `garage` CLI as an operator would.
//!
//! Invariant: a constructor returns only once the bucket is reachable with the key (`garage
//! bucket info` names it) and every node's S3 API answers; `start_node` returns only once the
//! node is back among the healthy nodes.

use super::{
    loopback, output, start_on_free_ports, temp_dir, wait_ready, which, Describe, Failure, Process,
    Server, INSTALL, READY_TIMEOUT,
};
use rand::Rng;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The version `cargo xtask servers` builds (xtask/src/servers.rs installs it at
/// `~/.cache/cairn-tools/garage-2.5.0/bin/garage`).
const VERSION: &str = "2.5.0";
/// The region in every generated configuration, so `AWS_DEFAULT_REGION` matches it.
pub const GARAGE_REGION: &str = "garage";
const KEY_NAME: &str = "cairn-test";

/// The user's AWS settings that would override or disturb the generated key, region and
/// endpoint; `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE` are set to /dev/null instead.
pub(super) const AWS_VARIABLES: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CA_BUNDLE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/// The Garage binary: `$CAIRN_GARAGE`, else `~/.cache/cairn-tools/garage-2.5.0/bin/garage`
/// (where `cargo xtask servers` builds it), else `garage` on PATH.
pub fn garage_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CAIRN_GARAGE") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
        panic!("CAIRN_GARAGE names {}, which is not a file", path.display());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached =
            Path::new(&home).join(format!(".cache/cairn-tools/garage-{VERSION}/bin/garage"));
        if cached.is_file() {
            return cached;
        }
    }
    which("garage").unwrap_or_else(|| {
        panic!(
            "garage {VERSION} not found (not at $CAIRN_GARAGE, \
             ~/.cache/cairn-tools/garage-{VERSION}/bin/garage or on PATH); {INSTALL} \
             (it builds Garage from source once, which takes a long time)"
        )
    })
}

/// A single Garage node (replication factor 1) with bucket `bucket`: location
/// `s3:http://127.0.0.1:PORT/<bucket>`, env `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_DEFAULT_REGION` (and `AWS_REGION`) = `garage`.
pub fn s3_garage(bucket: &str) -> Server {
    s3_garage_buckets(&[bucket])
}

/// As `s3_garage`, with one key given every right on each of `buckets` (at least one):
/// `location` names the first, and another is reached by replacing the last part of the
/// location. `benches/remote.rs` gives each tool a bucket of its own on one server.
pub fn s3_garage_buckets(buckets: &[&str]) -> Server {
    let bucket = *buckets.first().expect("s3_garage_buckets needs a bucket");
    let bin = garage_binary();
    let dir = temp_dir("garage");
    let secret = random_hex(32);
    let mut node = Node::start_new(&bin, &dir.path().join("node0"), &secret, 1);
    let result = (|| {
        let id = node.id(&bin)?;
        node.garage(&bin, &["layout", "assign", "-z", "dc1", "-c", "1G", &id])?;
        node.garage(&bin, &["layout", "apply", "--version", "1"])?;
        let key = create_bucket(&bin, &node, bucket)?;
        for other in &buckets[1..] {
            allow_bucket(&bin, &node, other, &key.0)?;
        }
        wait_for_s3(&[node.s3], bucket)?;
        Ok::<_, String>(key)
    })();
    let (key_id, secret_key) = result.unwrap_or_else(|e| {
        panic!(
            "cannot set up garage: {e}; its log ends:\n{}",
            node.log_tail()
        )
    });
    let describe = describe(bucket, key_id, secret_key);
    let process = node.process.take().expect("a node just started");
    super::server(describe, node.s3, None, process, dir)
}

/// Three Garage nodes on loopback, replication factor 3 (each in a zone of its own), one bucket
/// and key. `location` names node 0's S3 API: stop another node to keep the endpoint up, or use
/// `location_at`.
pub struct GarageCluster {
    pub location: String,
    pub env: Vec<(String, String)>,
    /// As `Server::env_remove`.
    pub env_remove: Vec<String>,
    bin: PathBuf,
    describe: Describe,
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl GarageCluster {
    pub fn start(bucket: &str) -> GarageCluster {
        let bin = garage_binary();
        let dir = temp_dir("garage-cluster");
        let secret = random_hex(32);
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| Node::start_new(&bin, &dir.path().join(format!("node{i}")), &secret, 3))
            .collect();
        let (key_id, secret_key) = set_up_cluster(&bin, &mut nodes, bucket).unwrap_or_else(|e| {
            let logs: Vec<String> = nodes.iter().map(Node::log_tail).collect();
            panic!(
                "cannot set up the garage cluster: {e}; the nodes' logs end:\n{}",
                logs.join("\n---\n")
            )
        });
        let describe = describe(bucket, key_id, secret_key);
        let (location, env) = describe(nodes[0].s3);
        GarageCluster {
            location,
            env,
            env_remove: super::names(&[super::PROXY_VARIABLES, AWS_VARIABLES]),
            bin,
            describe,
            nodes,
            _dir: dir,
        }
    }

    /// Removes `env_remove` from `cmd`'s environment and sets `env`.
    pub fn apply_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        super::apply_env(cmd, &self.env_remove, &self.env)
    }

    /// The location through node `i`'s S3 API.
    pub fn location_at(&self, i: usize) -> String {
        (self.describe)(self.nodes[i].s3).0
    }

    /// The S3 API address of node `i`, to put a proxy in front of.
    pub fn s3_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].s3
    }

    /// The location and environment through `proxy` instead of node 0.
    pub fn via(&self, proxy: SocketAddr) -> (String, Vec<(String, String)>) {
        (self.describe)(proxy)
    }

    /// Kills node `i` (SIGKILL, as a crash or power loss would) and reaps it.
    pub fn stop_node(&mut self, i: usize) {
        assert!(
            self.nodes[i].process.is_some(),
            "garage node {i} is already stopped"
        );
        self.nodes[i].process = None;
    }

    /// Starts node `i` again on its ports and data, and waits until every node sees it healthy.
    pub fn start_node(&mut self, i: usize) {
        assert!(
            self.nodes[i].process.is_none(),
            "garage node {i} is running"
        );
        let node = &mut self.nodes[i];
        let mut process = node.spawn(&self.bin);
        let bin = &self.bin;
        let ready = wait_ready(&mut process, || {
            let status = node.garage(bin, &["status"])?;
            healthy(&status, 3)
        });
        match ready {
            Ok(()) => node.process = Some(process),
            Err(Failure::PortTaken(why) | Failure::Fatal(why)) => {
                panic!("cannot restart garage node {i}: {why}")
            }
        }
        let bucket = self
            .location
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let addrs: Vec<SocketAddr> = self.nodes.iter().map(|n| n.s3).collect();
        wait_for_s3(&addrs, &bucket).unwrap_or_else(|e| panic!("garage node {i} restarted: {e}"));
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        self.nodes[i].log_tail()
    }
}

fn set_up_cluster(
    bin: &Path,
    nodes: &mut [Node],
    bucket: &str,
) -> Result<(String, String), String> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id(bin)).collect::<Result<_, _>>()?;
    for (node, id) in nodes.iter().zip(&ids).skip(1) {
        nodes[0].garage(bin, &["node", "connect", &format!("{id}@{}", node.rpc)])?;
    }
    // A node started again finds the others from its configuration, whatever it remembers.
    for (i, node) in nodes.iter().enumerate() {
        let peers: Vec<String> = nodes
            .iter()
            .zip(&ids)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (n, id))| format!("\"{id}@{}\"", n.rpc))
            .collect();
        let config = fs::read_to_string(&node.config).map_err(|e| e.to_string())?;
        let config = config.replace(
            "bootstrap_peers = []",
            &format!("bootstrap_peers = [{}]", peers.join(", ")),
        );
        fs::write(&node.config, config).map_err(|e| e.to_string())?;
    }
    poll("all three nodes to see each other", || {
        healthy(&nodes[0].garage(bin, &["status"])?, 3)
    })?;
    for (i, id) in ids.iter().enumerate() {
        let zone = format!("zone{i}");
        nodes[0].garage(bin, &["layout", "assign", "-z", &zone, "-c", "1G", id])?;
    }
    nodes[0].garage(bin, &["layout", "apply", "--version", "1"])?;
    let key = create_bucket(bin, &nodes[0], bucket)?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.s3).collect();
    wait_for_s3(&addrs, bucket)?;
    Ok(key)
}

/// Creates the key and the bucket and gives the key every right on it; returns the key's id
/// and secret.
fn create_bucket(bin: &Path, node: &Node, bucket: &str) -> Result<(String, String), String> {
    let created = node.garage(bin, &["key", "create", KEY_NAME])?;
    let field = |name: &str| {
        created
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("no `{name}` in the output of `garage key create`: {created}"))
    };
    let key_id = field("Key ID:")?;
    let secret_key = field("Secret key:")?;
    allow_bucket(bin, node, bucket, &key_id)?;
    Ok((key_id, secret_key))
}

/// Creates `bucket` and gives the key (`key_id`) read, write and owner rights on it; returns
/// once `garage bucket info` names the key.
fn allow_bucket(bin: &Path, node: &Node, bucket: &str, key_id: &str) -> Result<(), String> {
    node.garage(bin, &["bucket", "create", bucket])?;
    node.garage(
        bin,
        &[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", KEY_NAME,
        ],
    )?;
    poll("the key to reach the bucket", || {
        let info = node.garage(bin, &["bucket", "info", bucket])?;
        if info.contains(key_id) {
            Ok(())
        } else {
            Err(format!(
                "`garage bucket info {bucket}` does not name key {key_id}: {info}"
            ))
        }
    })
}

fn describe(bucket: &str, key_id: String, secret_key: String) -> Describe {
    let bucket = bucket.to_string();
    Box::new(move |addr| {
        (
            format!("s3:http://{addr}/{bucket}"),
            vec![
                ("AWS_ACCESS_KEY_ID".to_string(), key_id.clone()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), secret_key.clone()),
                ("AWS_DEFAULT_REGION".to_string(), GARAGE_REGION.to_string()),
                ("AWS_REGION".to_string(), GARAGE_REGION.to_string()),
                ("AWS_CONFIG_FILE".to_string(), "/dev/null".to_string()),
                (
                    "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                    "/dev/null".to_string(),
                ),
            ],
        )
    })
}

/// One Garage node: its configuration, ports and process (None while stopped).
struct Node {
    config: PathBuf,
    log: PathBuf,
    rpc: SocketAddr,
    s3: SocketAddr,
    process: Option<Process>,
}

impl Node {
    /// Writes a configuration on free ports in `dir` and starts the node; it answers the CLI on
    /// return.
    fn start_new(bin: &Path, dir: &Path, secret: &str, replication: u32) -> Node {
        fs::create_dir_all(dir).expect("create a garage node's dir");
        let config = dir.join("garage.toml");
        let admin_token = random_hex(32);
        start_on_free_ports("garage", 3, |ports| {
            let text = garage_toml(dir, ports, secret, &admin_token, replication);
            fs::write(&config, text).expect("write garage.toml");
            let mut node = Node {
                config: config.clone(),
                log: dir.join("garage.log"),
                rpc: loopback(ports[0]),
                s3: loopback(ports[1]),
                process: None,
            };
            let mut process = node.spawn(bin);
            wait_ready(&mut process, || node.garage(bin, &["status"]).map(drop))?;
            node.process = Some(process);
            Ok(node)
        })
    }

    fn spawn(&self, bin: &Path) -> Process {
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&self.config).arg("server");
        // Appends: a restarted node's log follows its first life's.
        Process::spawn_appending("garage server", &mut cmd, &self.log)
    }

    /// Runs the `garage` CLI against this node; its stdout.
    fn garage(&self, bin: &Path, args: &[&str]) -> Result<String, String> {
        output(Command::new(bin).arg("-c").arg(&self.config).args(args))
    }

    /// The node's full id (hex), from its metadata dir.
    fn id(&self, bin: &Path) -> Result<String, String> {
        let out = self.garage(bin, &["node", "id", "-q"])?;
        out.trim()
            .split('@')
            .next()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("`garage node id` printed {out:?}"))
    }

    fn log_tail(&self) -> String {
        super::tail(&self.log)
    }
}

/// `ports`: RPC, S3, admin. No fsync: the tests stop nodes by killing processes, which loses
/// nothing the kernel holds.
fn garage_toml(
    dir: &Path,
    ports: &[u16],
    secret: &str,
    admin_token: &str,
    replication: u32,
) -> String {
    let d = dir.display();
    let (rpc, s3, admin) = (ports[0], ports[1], ports[2]);
    format!(
        "metadata_dir = \"{d}/meta\"
data_dir = \"{d}/data\"
db_engine = \"lmdb\"
metadata_fsync = false
data_fsync = false
replication_factor = {replication}
rpc_bind_addr = \"127.0.0.1:{rpc}\"
rpc_public_addr = \"127.0.0.1:{rpc}\"
rpc_secret = \"{secret}\"
bootstrap_peers = []

[s3_api]
s3_region = \"{GARAGE_REGION}\"
api_bind_addr = \"127.0.0.1:{s3}\"
root_domain = \".s3.garage.localhost\"

[admin]
api_bind_addr = \"127.0.0.1:{admin}\"
admin_token = \"{admin_token}\"
"
    )
}

/// `status` (the output of `garage status`) lists `n` healthy nodes and no failed one.
fn healthy(status: &str, n: usize) -> Result<(), String> {
    let up = status
        .split("==== FAILED NODES ====")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("127.0.0.1:"))
        .count();
    if up == n && !status.contains("FAILED NODES") {
        Ok(())
    } else {
        Err(format!("{up} of {n} nodes healthy: {status}"))
    }
}

/// Every address answers an anonymous request for the bucket with an S3 error that is not a
/// 5xx (Garage refuses it, 403, once the bucket and layout are in place).
fn wait_for_s3(addrs: &[SocketAddr], bucket: &str) -> Result<(), String> {
    for &addr in addrs {
        poll(&format!("the S3 API at {addr}"), || {
            let mut stream = super::connect(addr)?;
            let request =
                format!("GET /{bucket}/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            let status = answer.lines().next().unwrap_or_default().to_string();
            match status.split(' ').nth(1) {
                Some(code) if code.starts_with('2') || code.starts_with('4') => Ok(()),
                _ => Err(format!("{addr} answered {status:?}")),
            }
        })?;
    }
    Ok(())
}

/// Runs `check` until it succeeds or `READY_TIMEOUT` passes; the last error then.
fn poll(what: &str, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "waited {} s for {what}: {e}",
                    READY_TIMEOUT.as_secs()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn random_hex(n_bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n_bytes)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}
