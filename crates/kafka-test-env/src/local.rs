//! Finding the Apache Kafka started by `cargo xtask kafka start`.
//!
//! Contract with `xtask`: the broker's address is in
//! `<target dir>/kafka/bootstrap.txt` as `127.0.0.1:PORT` (surrounding
//! whitespace ignored); a broker started with `--secure` also has
//! `secure.json` beside it (read by [`crate::secured`]). The target dir is `$CARGO_TARGET_DIR` when set at run
//! time (a relative one is taken from the workspace root), else
//! `<workspace>/target`.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::TestEnvError;

/// How long to wait for the broker's listener to accept a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The workspace root: two levels up from this crate's manifest.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Where `cargo xtask kafka start` writes the broker's address.
pub(crate) fn bootstrap_file() -> PathBuf {
    let root = workspace_root();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    };
    target_dir.join("kafka").join("bootstrap.txt")
}

/// Where `cargo xtask kafka start --secure` describes the secured listeners.
pub(crate) fn secure_file() -> PathBuf {
    bootstrap_file().with_file_name("secure.json")
}

/// The process id of the running local broker, from `broker.pid` beside the
/// bootstrap file.
pub(crate) fn broker_pid() -> Result<u32, TestEnvError> {
    let path = bootstrap_file().with_file_name("broker.pid");
    let text =
        std::fs::read_to_string(&path).map_err(|error| TestEnvError::LocalBrokerNotRunning {
            detail: format!("cannot read {}: {error}", path.display()),
        })?;
    text.trim()
        .parse()
        .map_err(|error| TestEnvError::LocalBrokerNotRunning {
            detail: format!(
                "{} holds {:?}, not a pid: {error}",
                path.display(),
                text.trim()
            ),
        })
}

/// Reads the bootstrap file and checks that the broker accepts connections.
pub(crate) fn discover() -> Result<String, TestEnvError> {
    let path = bootstrap_file();
    let not_running = |detail: String| TestEnvError::LocalBrokerNotRunning { detail };
    let text = std::fs::read_to_string(&path)
        .map_err(|error| not_running(format!("cannot read {}: {error}", path.display())))?;
    let bootstrap = text.trim();
    if bootstrap.is_empty() {
        return Err(not_running(format!("{} is empty", path.display())));
    }
    probe(bootstrap).map_err(|detail| {
        not_running(format!(
            "{} names {bootstrap}, but {detail}",
            path.display()
        ))
    })?;
    Ok(bootstrap.to_owned())
}

/// Succeeds when the first address of a bootstrap list accepts a TCP
/// connection; the error says why not.
pub(crate) fn probe(bootstrap: &str) -> Result<(), String> {
    let first = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let addresses: Vec<SocketAddr> = first
        .to_socket_addrs()
        .map_err(|error| format!("{first:?} is not a usable host:port ({error})"))?
        .collect();
    let mut last_error = format!("{first:?} resolves to no address");
    for address in &addresses {
        match TcpStream::connect_timeout(address, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(error) => {
                last_error = format!("nothing accepts TCP connections at {address} ({error})")
            }
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn bootstrap_file_is_under_the_workspace_target_dir() {
        let path = bootstrap_file();
        assert!(path.ends_with("kafka/bootstrap.txt"), "{}", path.display());
        assert!(secure_file().ends_with("kafka/secure.json"));
        assert!(
            path.starts_with(workspace_root()),
            "{} is outside {}",
            path.display(),
            workspace_root().display()
        );
        assert!(workspace_root().join("Cargo.toml").exists());
    }

    #[test]
    fn probe_accepts_a_listener_and_rejects_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let address = listener.local_addr().expect("listener address").to_string();
        probe(&address).expect("an open listener is accepted");
        drop(listener);
        let error = probe(&address).expect_err("a closed port is rejected");
        assert!(error.contains("nothing accepts TCP connections"), "{error}");
        assert!(probe("not an address").is_err());
    }
}
