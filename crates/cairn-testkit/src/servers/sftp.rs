//! OpenSSH's sshd on a loopback port for SFTP: generated host and user keys, public-key
//! authentication only, the current user (root too) allowed, the `internal-sftp` subsystem.
//!
//! Invariant: the ssh command handed to cairn reaches this server and nothing of the user's:
//! `-F none` (no ~/.ssh/config), one identity (`IdentitiesOnly`), and host keys checked strictly
//! against a known_hosts file of the test's own, under a `HostKeyAlias` so the check holds
//! whichever port (the server's or a proxy's) the command names.

use super::{
    banner, loopback, output, require, server, start_on_free_ports, temp_dir, wait_ready, Describe,
    Process, Server,
};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The name the server's host key is recorded under in the generated known_hosts.
const HOST_KEY_ALIAS: &str = "cairn-test-sshd";

/// sshd serving the directory `root` (an absolute path in the server's temp dir): location
/// `sftp://USER@127.0.0.1:PORT/<root>/<repo>`, which, `root` being absolute, has two slashes
/// after the port (as restic writes an absolute path); env `CAIRN_SFTP_COMMAND`, the whole ssh
/// command that reaches it non-interactively, to be split on whitespace.
pub fn sftp(repo: &str) -> Server {
    let sshd = require("/usr/sbin/sshd", "openssh-server");
    let keygen = require("ssh-keygen", "openssh-client");
    let ssh = require("ssh", "openssh-client");
    let user = current_user();
    let dir = temp_dir("sshd");
    let base = dir.path();
    let root = base.join("root");
    fs::create_dir(&root).expect("create the served dir");
    for key in ["host_ed25519", "user_ed25519"] {
        output(
            Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
                .arg(base.join(key)),
        )
        .unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
    }
    let read = |name: &str| {
        fs::read_to_string(base.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    };
    fs::write(base.join("authorized_keys"), read("user_ed25519.pub")).expect("authorized_keys");
    fs::write(
        base.join("known_hosts"),
        format!("{HOST_KEY_ALIAS} {}", read("host_ed25519.pub")),
    )
    .expect("known_hosts");
    privilege_separation_dir();

    let (process, addr) = start_on_free_ports("sshd", 1, |ports| {
        let addr = loopback(ports[0]);
        let config = base.join("sshd_config");
        fs::write(&config, sshd_config(base, ports[0], &user)).expect("write sshd_config");
        // sshd re-executes itself, which needs its absolute path.
        let mut cmd = Command::new(&sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config);
        let mut process = Process::spawn("sshd", &mut cmd, &base.join("sshd.log"));
        wait_ready(&mut process, || banner(addr, "SSH-2.0-")).map(|()| (process, addr))
    });

    let key = base.join("user_ed25519");
    let known_hosts = base.join("known_hosts");
    let path = format!("{}/{repo}", root.display());
    let ssh = ssh.display().to_string();
    let describe: Describe = Box::new(move |addr| {
        let command = format!(
            "{ssh} -F none -i {} -p {} -o IdentitiesOnly=yes -o HostKeyAlias={HOST_KEY_ALIAS} \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR {user}@{} -s sftp",
            key.display(),
            addr.port(),
            known_hosts.display(),
            addr.ip(),
        );
        (
            format!("sftp://{user}@{addr}/{path}"),
            vec![("CAIRN_SFTP_COMMAND".to_string(), command)],
        )
    });
    server(describe, addr, Some(root), process, dir)
}

/// Only keys, only the current user, nothing from /etc/ssh. `StrictModes no`: the key files
/// sit under /tmp, which is world-writable, and sshd would refuse them for that. PAM only when
/// not root: without it sshd refuses an account whose password is locked (`!` in /etc/shadow,
/// as key-only accounts often have, and it cannot read the shadow file to tell otherwise),
/// while as root the system's PAM session modules can fail in a container (pam_loginuid).
fn sshd_config(base: &Path, port: u16, user: &str) -> String {
    let base = base.display();
    let use_pam = if user == "root" { "no" } else { "yes" };
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {base}/host_ed25519
PidFile none
AuthorizedKeysFile {base}/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM {use_pam}
StrictModes no
AllowUsers {user}
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
"
    )
}

/// sshd run by root insists on its privilege separation directory, which Debian creates only
/// when the system's ssh service starts.
fn privilege_separation_dir() {
    if current_user() == "root" && !Path::new("/run/sshd").is_dir() {
        fs::create_dir_all("/run/sshd")
            .unwrap_or_else(|e| panic!("cannot start sshd: create /run/sshd: {e}"));
    }
}

fn current_user() -> String {
    output(Command::new("id").arg("-un"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|e| panic!("cannot start sshd: the current user's name: {e}"))
}
