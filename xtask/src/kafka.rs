//! `cargo xtask kafka start|stop|status`: a single-node Apache Kafka broker
//! (KRaft, broker and controller in one JVM) run from Maven Central jars;
//! with `--nodes 3`, the three-node cluster of [`cluster`] instead, from the
//! same jars. `stop` and `status` without `--nodes` cover both.
//!
//! Everything lives in `<target>/kafka/`, and other crates rely on this
//! layout:
//!
//! - `bootstrap.txt`: `127.0.0.1:PORT` of the running broker's PLAINTEXT
//!   listener (trim it when reading);
//! - `broker.pid`: the broker's process id;
//! - `secure.json`: only while a broker started with `--secure` runs, written
//!   once its ACLs exist: its secured listeners, users and passwords, and TLS
//!   files (see [`secure_json`]);
//! - `broker.log`: the broker's log (log4j2 at INFO, and anything else the JVM
//!   prints);
//! - `data/`: the broker's log directory, formatted afresh on every start;
//! - `tls/`: for `--secure`, a test CA and the broker's and the client's keys
//!   and certificates, made with `keytool` on first use and kept (`.complete`
//!   marks a finished set; delete the directory for a new one);
//! - `libs-4.4.0/`: the jars, resolved once with Maven (`.complete` marks a
//!   finished download and holds the `pom.xml` it came from: a changed pom
//!   resolves them again).
//!
//! The broker runs in its own process group, so it outlives the `xtask` that
//! started it, and `start` reuses it while it answers.
//!
//! # `--secure`
//!
//! Besides the PLAINTEXT listener (the bootstrap of every other test,
//! unchanged; its principal is `User:ANONYMOUS`), the broker then listens on
//! two more ports of 127.0.0.1, advertised as `localhost`, the only name in
//! the broker's certificate (so a client that bootstraps at `127.0.0.1`
//! fails hostname verification):
//!
//! - `SASL_SSL`, with SCRAM-SHA-256, SCRAM-SHA-512, PLAIN and OAUTHBEARER
//!   (Kafka's unsecured JWT validator: any `sub` is accepted);
//! - `MTLS`, protocol `SSL` with `ssl.client.auth=required`; the principal is
//!   the CN of the client certificate, `User:tiered-kafka-client`.
//!
//! `StandardAuthorizer` guards every listener, with
//! `allow.everyone.if.no.acl.found=false` and the super users
//! `User:ANONYMOUS` (PLAINTEXT and controller listeners) and `User:admin`.
//! The users are in [`USERS`], the ACLs (all on the prefix `secure-`) in
//! [`ACLS`].

use std::{
    ffi::OsString,
    fs,
    io::{ErrorKind, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::flags;

pub(crate) mod cluster;
mod wire;

/// The Apache Kafka release we run.
pub(crate) const KAFKA_VERSION: &str = "4.4.0";
/// The log4j2 release that `kafka_2.13` 4.4.0 resolves to; the SLF4J binding
/// we add is pinned to it (through log4j's BOM).
const LOG4J_VERSION: &str = "2.25.5";
/// The line Kafka 4.4 logs once the broker and controller are both up.
const READY_LINE: &str = "[KafkaRaftServer nodeId=1] Kafka Server started";
/// How long `start` waits for the broker to come up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// What to install when `java` or `mvn` is missing.
const INSTALL_HINT: &str = "Install them, e.g. `apt-get install openjdk-17-jre-headless maven`";

/// The prefix of every topic and group the [`ACLS`] cover.
const ACL_PREFIX: &str = "secure-";
/// The SASL mechanisms of the `SASL_SSL` listener; every user of [`USERS`]
/// can use each of them.
const SASL_MECHANISMS: [&str; 4] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"];
/// The common name of the client certificate and, mapped by
/// `ssl.principal.mapping.rules`, the user name of mTLS clients.
const MTLS_USER: &str = "tiered-kafka-client";
/// The users of the `SASL_SSL` listener and what they may do. Each has a
/// SCRAM-SHA-256 and a SCRAM-SHA-512 credential and a PLAIN password, all
/// the same random password, new on every start; OAUTHBEARER takes any
/// name without a password. `admin` is a super user.
const USERS: [(&str, &str); 4] = [
    ("admin", "super user: everything"),
    (
        "alice",
        "READ and DESCRIBE on topics `secure-*`, READ on groups `secure-*`",
    ),
    (
        "no-topic-read",
        "READ on groups `secure-*`, nothing on topics",
    ),
    (
        "no-group-read",
        "READ and DESCRIBE on topics `secure-*`, nothing on groups",
    ),
];
/// The ACLs `start --secure` creates, each ALLOW from any host on resources
/// with the prefix [`ACL_PREFIX`]: the principals, the operations, and the
/// resource options of `AclCommand`. Each entry is one `AclCommand` run.
const ACLS: [(&[&str], &[&str], &[&str]); 3] = [
    (
        &["User:alice", "User:tiered-kafka-client"],
        &["Read", "Describe"],
        &["--topic", ACL_PREFIX, "--group", ACL_PREFIX],
    ),
    (&["User:no-topic-read"], &["Read"], &["--group", ACL_PREFIX]),
    (
        &["User:no-group-read"],
        &["Read", "Describe"],
        &["--topic", ACL_PREFIX],
    ),
];
/// What `tls/.complete` holds once the TLS material is complete; material
/// marked otherwise is made anew.
const TLS_MATERIAL_VERSION: &str = "tiered-kafka xtask TLS material v1\n";
/// Days the test CA and its certificates are valid.
const TLS_VALIDITY_DAYS: &str = "3650";
/// The environment variable that hands the keystore password to `keytool`
/// and `openssl`, so that it is never on a command line.
const STORE_PASSWORD_ENV: &str = "XTASK_KAFKA_STORE_PASSWORD";
/// JVM options for the short-lived Java tools (`keytool`, `AclCommand`):
/// they start faster with the C1 compiler only and the serial collector.
const QUICK_JVM: [&str; 2] = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];

/// Which listeners [`start_with`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listeners {
    /// The PLAINTEXT listener only (and the controller's).
    Plaintext,
    /// PLAINTEXT plus the `SASL_SSL` and mTLS listeners, with ACLs
    /// (`start --secure`).
    Secure,
}

/// Runs `cargo xtask kafka ...`: the single node, or with `--nodes 3` the
/// cluster of [`cluster`]. `stop` and `status` without `--nodes`
/// cover both.
pub(crate) fn run(flags: flags::Kafka) -> Result<ExitCode> {
    match flags.subcommand {
        flags::KafkaCmd::Start(flags::Start { secure, nodes }) => match Nodes::from_flag(nodes)? {
            Some(Nodes::Cluster) => {
                if secure {
                    bail!(
                        "`--secure` is for the single node only; the {}-node cluster has PLAINTEXT listeners",
                        cluster::NODES
                    );
                }
                println!("{}", cluster::start()?);
            }
            Some(Nodes::Single) | None => {
                let listeners = if secure {
                    Listeners::Secure
                } else {
                    Listeners::Plaintext
                };
                let bootstrap = start_with(listeners)?;
                println!("{bootstrap}");
            }
        },
        flags::KafkaCmd::Stop(flags::Stop { nodes }) => {
            let nodes = Nodes::from_flag(nodes)?;
            if nodes != Some(Nodes::Cluster) {
                stop()?;
            }
            if nodes != Some(Nodes::Single) {
                cluster::stop()?;
            }
        }
        flags::KafkaCmd::Status(flags::Status { nodes }) => {
            let nodes = Nodes::from_flag(nodes)?;
            if nodes != Some(Nodes::Cluster) {
                print_status()?;
            }
            if nodes != Some(Nodes::Single) {
                cluster::print_status()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which Kafka a `kafka` command is about, from `--nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nodes {
    /// `--nodes 1`: the single node in `<target>/kafka/`.
    Single,
    /// `--nodes 3`: the cluster in `<target>/kafka-cluster/`.
    Cluster,
}

impl Nodes {
    /// `None` without the flag.
    fn from_flag(nodes: Option<u8>) -> Result<Option<Nodes>> {
        match nodes {
            None => Ok(None),
            Some(1) => Ok(Some(Nodes::Single)),
            Some(n) if usize::from(n) == cluster::NODES => Ok(Some(Nodes::Cluster)),
            Some(n) => bail!(
                "`--nodes {n}`: there is the single node (`--nodes 1`) and the {}-node cluster (`--nodes {}`)",
                cluster::NODES,
                cluster::NODES
            ),
        }
    }
}

/// Prints what `status` says about the single node.
fn print_status() -> Result<()> {
    let state = State::new()?;
    match state.status() {
        Status::Running { pid, bootstrap } => {
            println!("Kafka broker running at {bootstrap} (pid {pid})");
            match state.published_secure_listeners() {
                Some(secure) if secure.answers() => {
                    println!("{}", secure.describe(&state.secure_file()));
                }
                Some(_) => println!(
                    "  the secured listeners in {} do not answer",
                    state.secure_file().display()
                ),
                None => {
                    println!(
                        "  no secured listeners (`cargo xtask kafka start --secure` adds them)"
                    )
                }
            }
        }
        Status::Unresponsive { pid } => println!(
            "Kafka broker process {pid} is alive but does not answer \
             (starting, or stuck: `cargo xtask kafka stop`)"
        ),
        Status::Stopped => println!("Kafka broker not running"),
    }
    Ok(())
}

/// The directory of the Apache Kafka jars, resolved with Maven first if no
/// complete download is there: the single node's `libs-4.4.0/`, which the
/// cluster shares. Takes the single node's lock only to download.
pub(crate) fn resolve_jars() -> Result<PathBuf> {
    let state = State::new()?;
    let libs = state.libs();
    if fs::read_to_string(libs.join(".complete")).is_ok_and(|done| done == pom_xml()) {
        return Ok(libs);
    }
    fs::create_dir_all(&state.dir).with_context(|| format!("creating {}", state.dir.display()))?;
    let _lock = state.lock()?;
    state.resolve_jars()?;
    Ok(libs)
}

/// Starts the broker with its PLAINTEXT listener, or reuses the running one,
/// secured or not: [`start_with`] for [`Listeners::Plaintext`].
pub(crate) fn start() -> Result<String> {
    start_with(Listeners::Plaintext)
}

/// Starts the broker, or reuses the one the state files describe while it
/// answers (and, for [`Listeners::Secure`], has its secured listeners), and
/// returns its PLAINTEXT bootstrap address (`127.0.0.1:PORT`). A running
/// broker without the secured listeners asked for is restarted with them.
///
/// Waits until the broker has logged [`READY_LINE`] and every listener
/// accepts TCP connections; with [`Listeners::Secure`] it then creates the
/// [`ACLS`] and writes `secure.json`. On failure it prints the end of
/// `broker.log` and stops the broker again.
pub(crate) fn start_with(listeners: Listeners) -> Result<String> {
    let state = State::new()?;
    fs::create_dir_all(&state.dir).with_context(|| format!("creating {}", state.dir.display()))?;
    let _lock = state.lock()?;
    let secure = listeners == Listeners::Secure;
    match state.status() {
        Status::Running { pid, bootstrap } => {
            let has_secure = state
                .published_secure_listeners()
                .is_some_and(|published| published.answers());
            if has_secure || !secure {
                let with = if has_secure {
                    " with secured listeners"
                } else {
                    ""
                };
                eprintln!(
                    "xtask: Kafka broker already running at {bootstrap}{with} (pid {pid}); reusing it"
                );
                return Ok(bootstrap);
            }
            eprintln!(
                "xtask: Kafka broker at {bootstrap} (pid {pid}) has no secured listeners; \
                 restarting it with them"
            );
            state.terminate(pid)?;
        }
        Status::Unresponsive { pid } => {
            eprintln!("xtask: Kafka broker pid {pid} does not answer; restarting it");
            state.terminate(pid)?;
        }
        Status::Stopped => {}
    }
    state.remove_run_files()?;

    require_on_path(&["java"])?;
    state.resolve_jars()?;
    let started = Instant::now();
    // The TLS material first: making it takes seconds, and the free ports
    // are best used at once.
    let tls = if secure {
        Some(state.ensure_tls()?)
    } else {
        None
    };
    let ports = free_ports(if secure { 4 } else { 2 })?;
    let (port, controller_port) = (ports[0], ports[1]);
    let bootstrap = format!("127.0.0.1:{port}");
    let setup = match tls {
        Some(tls) => Some(SecureListeners {
            plaintext_bootstrap: bootstrap.clone(),
            sasl_ssl_port: ports[2],
            mtls_port: ports[3],
            tls,
            users: User::generate_all()?,
        }),
        None => None,
    };
    write(
        &state.server_properties(),
        &server_properties(port, controller_port, &state.data(), setup.as_ref()),
    )?;
    write(&state.log4j_config(), LOG4J_CONFIG)?;
    state.format_storage(setup.as_ref().map_or(&[], |setup| &setup.users[..]))?;

    eprintln!("xtask: starting Apache Kafka {KAFKA_VERSION} at {bootstrap}");
    let mut broker = state.spawn_broker()?;
    let pid = broker.id();
    write(&state.pid_file(), &pid.to_string())?;
    write(&state.bootstrap_file(), &bootstrap)?;
    let mut listening = vec![bootstrap.clone()];
    if let Some(setup) = &setup {
        listening.extend(setup.summary().probe_addresses());
    }
    let ready = state
        .wait_until_ready(&mut broker, &listening)
        .and_then(|()| match &setup {
            Some(setup) => {
                state.create_acls(&bootstrap)?;
                write(&state.secure_file(), &secure_json(setup)?)
            }
            None => Ok(()),
        });
    if let Err(err) = ready {
        eprintln!("xtask: last lines of {}:", state.log().display());
        eprintln!("{}", last_lines(&state.log(), 30));
        // A broker that failed to start holds nothing worth a clean shutdown.
        let _ = broker.kill();
        let _ = broker.wait();
        state.remove_run_files()?;
        return Err(err);
    }
    // Reap the broker if it exits while this xtask still runs (`test
    // --stop-kafka`); otherwise the thread simply ends with the process.
    thread::spawn(move || broker.wait());
    eprintln!(
        "xtask: Kafka broker ready at {bootstrap} (pid {pid}) after {:.1} s; log in {}",
        started.elapsed().as_secs_f64(),
        state.log().display()
    );
    if let Some(setup) = &setup {
        eprintln!("{}", setup.summary().describe(&state.secure_file()));
    }
    Ok(bootstrap)
}

/// Stops the broker the state files describe (SIGTERM, then SIGKILL after
/// [`STOP_TIMEOUT`]) and removes its pid, bootstrap and `secure.json` files.
/// Does nothing when no broker runs.
pub(crate) fn stop() -> Result<()> {
    let state = State::new()?;
    if !state.dir.exists() {
        eprintln!("xtask: Kafka broker not running");
        return Ok(());
    }
    let _lock = state.lock()?;
    match state.read_pid() {
        Some(pid) if state.is_broker(pid) => {
            eprintln!("xtask: stopping Kafka broker (pid {pid})");
            state.terminate(pid)?;
            eprintln!("xtask: Kafka broker stopped");
        }
        _ => eprintln!("xtask: Kafka broker not running"),
    }
    state.remove_run_files()
}

/// What the state files say about the broker.
enum Status {
    /// The broker process is alive and its port accepts connections.
    Running {
        /// Its process id.
        pid: u32,
        /// Its bootstrap address.
        bootstrap: String,
    },
    /// The broker process is alive but its port does not answer.
    Unresponsive {
        /// Its process id.
        pid: u32,
    },
    /// No broker process runs.
    Stopped,
}

/// The directory of the Apache Kafka jars, when `start` has resolved them
/// (the Java benchmark contender compiles against its `kafka-clients`).
pub(crate) fn resolved_libs() -> Result<Option<PathBuf>> {
    let libs = State::new()?.libs();
    Ok(libs.join(".complete").exists().then_some(libs))
}

/// One user of the `SASL_SSL` listener, for one start.
struct User {
    /// The user name (also the OAUTHBEARER principal).
    name: &'static str,
    /// What the user may do, in words (from [`USERS`]).
    access: &'static str,
    /// Its SCRAM and PLAIN password: random, new on every start.
    password: String,
}

impl User {
    /// Every user of [`USERS`], each with a new random password.
    fn generate_all() -> Result<Vec<User>> {
        USERS
            .iter()
            .map(|&(name, access)| {
                Ok(User {
                    name,
                    access,
                    password: format!("{name}-pw-{}", random_hex(16)?),
                })
            })
            .collect()
    }
}

/// The TLS files in `<state>/tls/`, made by [`State::ensure_tls`].
struct Tls {
    /// The directory.
    dir: PathBuf,
    /// The password of every PKCS#12 keystore in it.
    password: String,
    /// The client's private key as PEM, made from its keystore when `openssl`
    /// is on `PATH`.
    client_key_pem: Option<PathBuf>,
}

impl Tls {
    /// The CA certificate, PEM: `ssl.ca.location` for clients, and the
    /// broker's truststore (Kafka reads PEM truststores).
    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The broker's key and certificate chain (PKCS#12).
    fn broker_keystore(&self) -> PathBuf {
        self.dir.join("broker.p12")
    }

    /// The client's key and certificate chain (PKCS#12), for
    /// `ssl.keystore.location`.
    fn client_keystore(&self) -> PathBuf {
        self.dir.join("client.p12")
    }

    /// The client's certificate, PEM, for `ssl.certificate.location`.
    fn client_certificate_pem(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
}

/// Everything about the secured listeners of one `start --secure`.
struct SecureListeners {
    /// The PLAINTEXT bootstrap of the same broker (super user `ANONYMOUS`).
    plaintext_bootstrap: String,
    /// The port of the `SASL_SSL` listener.
    sasl_ssl_port: u16,
    /// The port of the mTLS listener.
    mtls_port: u16,
    /// The TLS files.
    tls: Tls,
    /// The users and their passwords.
    users: Vec<User>,
}

impl SecureListeners {
    /// The addresses, as `status` shows them.
    fn summary(&self) -> SecureSummary {
        SecureSummary {
            sasl_ssl_port: self.sasl_ssl_port,
            mtls_port: self.mtls_port,
        }
    }

    /// The broker configuration for these listeners, appended to the
    /// PLAINTEXT broker's.
    fn server_properties(&self) -> String {
        let plain_users: String = self
            .users
            .iter()
            .map(|user| format!(" user_{}=\"{}\"", user.name, user.password))
            .collect();
        format!(
            "\
# Secured listeners (`--secure`): SASL_SSL and mTLS, with ACLs.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS;User:admin
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
listener.name.mtls.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms={mechanisms}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";
",
            keystore = self.tls.broker_keystore().display(),
            password = self.tls.password,
            ca = self.tls.ca_pem().display(),
            mechanisms = SASL_MECHANISMS.join(","),
        )
    }

    /// Every password of this start, to keep out of anything printed.
    #[cfg(test)]
    fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.users.iter().map(|u| u.password.as_str()).collect();
        secrets.push(&self.tls.password);
        secrets
    }
}

/// `secure.json`, which tests read (`kafka-test-env`'s `SecuredBroker`):
///
/// ```json
/// {
///   "format": 1,
///   "kafka_version": "4.4.0",
///   "plaintext_bootstrap": "127.0.0.1:PORT",
///   "sasl_ssl_bootstrap": "localhost:PORT",
///   "sasl_ssl_port": PORT,
///   "sasl_mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"],
///   "mtls_bootstrap": "localhost:PORT",
///   "mtls_port": PORT,
///   "mtls_principal": "User:tiered-kafka-client",
///   "ca_pem": "/abs/target/kafka/tls/ca.pem",
///   "client_keystore": "/abs/target/kafka/tls/client.p12",
///   "client_keystore_password": "…",
///   "client_certificate_pem": "/abs/target/kafka/tls/client.pem",
///   "client_key_pem": "/abs/target/kafka/tls/client.key" or null,
///   "acl_prefix": "secure-",
///   "users": [
///     {"name": "alice", "password": "…", "mechanisms": [...], "access": "…"},
///     …
///   ]
/// }
/// ```
///
/// Passwords are new on every start; the keystore password lasts as long as
/// the TLS material.
fn secure_json(setup: &SecureListeners) -> Result<String> {
    let summary = setup.summary();
    let users: Vec<serde_json::Value> = setup
        .users
        .iter()
        .map(|user| {
            serde_json::json!({
                "name": user.name,
                "password": user.password,
                "mechanisms": SASL_MECHANISMS,
                "access": user.access,
            })
        })
        .collect();
    let path = |path: &Path| path.to_string_lossy().into_owned();
    let json = serde_json::json!({
        "format": 1,
        "kafka_version": KAFKA_VERSION,
        "plaintext_bootstrap": setup.plaintext_bootstrap,
        "sasl_ssl_bootstrap": summary.sasl_ssl_bootstrap(),
        "sasl_ssl_port": setup.sasl_ssl_port,
        "sasl_mechanisms": SASL_MECHANISMS,
        "mtls_bootstrap": summary.mtls_bootstrap(),
        "mtls_port": setup.mtls_port,
        "mtls_principal": format!("User:{MTLS_USER}"),
        "ca_pem": path(&setup.tls.ca_pem()),
        "client_keystore": path(&setup.tls.client_keystore()),
        "client_keystore_password": setup.tls.password,
        "client_certificate_pem": path(&setup.tls.client_certificate_pem()),
        "client_key_pem": setup.tls.client_key_pem.as_deref().map(path),
        "acl_prefix": ACL_PREFIX,
        "users": users,
    });
    let mut text = serde_json::to_string_pretty(&json).context("serialising secure.json")?;
    text.push('\n');
    Ok(text)
}

/// Where the secured listeners are, as `secure.json` publishes them.
struct SecureSummary {
    /// The port of the `SASL_SSL` listener.
    sasl_ssl_port: u16,
    /// The port of the mTLS listener.
    mtls_port: u16,
}

impl SecureSummary {
    /// Reads the ports back from the text of `secure.json`.
    fn from_json(text: &str) -> Option<SecureSummary> {
        let json: serde_json::Value = serde_json::from_str(text).ok()?;
        let port = |key: &str| u16::try_from(json.get(key)?.as_u64()?).ok();
        Some(SecureSummary {
            sasl_ssl_port: port("sasl_ssl_port")?,
            mtls_port: port("mtls_port")?,
        })
    }

    fn sasl_ssl_bootstrap(&self) -> String {
        format!("localhost:{}", self.sasl_ssl_port)
    }

    fn mtls_bootstrap(&self) -> String {
        format!("localhost:{}", self.mtls_port)
    }

    /// The addresses the listeners bind, to probe with TCP.
    fn probe_addresses(&self) -> [String; 2] {
        [
            format!("127.0.0.1:{}", self.sasl_ssl_port),
            format!("127.0.0.1:{}", self.mtls_port),
        ]
    }

    /// Whether both listeners accept TCP connections.
    fn answers(&self) -> bool {
        self.probe_addresses().iter().all(|addr| accepts_tcp(addr))
    }

    /// Some lines for people, without secrets.
    fn describe(&self, secure_file: &Path) -> String {
        let users: Vec<&str> = USERS.iter().map(|&(name, _)| name).collect();
        format!(
            "  SASL_SSL at {} ({})\n  SSL with client certificates (mTLS) at {} (User:{MTLS_USER})\n  \
             users ({}), passwords and TLS files in {}",
            self.sasl_ssl_bootstrap(),
            SASL_MECHANISMS.join(", "),
            self.mtls_bootstrap(),
            users.join(", "),
            secure_file.display()
        )
    }
}

/// The state directory `<target>/kafka/` and the files in it.
struct State {
    /// The directory itself.
    dir: PathBuf,
}

impl State {
    fn new() -> Result<State> {
        Ok(State {
            dir: crate::target_dir()?.join("kafka"),
        })
    }

    fn libs(&self) -> PathBuf {
        self.dir.join(format!("libs-{KAFKA_VERSION}"))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("broker.pid")
    }

    fn bootstrap_file(&self) -> PathBuf {
        self.dir.join("bootstrap.txt")
    }

    fn secure_file(&self) -> PathBuf {
        self.dir.join("secure.json")
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn server_properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log4j_config(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }

    /// The `-cp` argument: every jar in [`State::libs`] (Java expands `*`).
    fn classpath(&self) -> PathBuf {
        self.libs().join("*")
    }

    /// Takes the lock that serialises `start` and `stop` across processes;
    /// it is released when the returned file is dropped.
    fn lock(&self) -> Result<fs::File> {
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_err() {
            eprintln!("xtask: waiting for another xtask to finish with the Kafka broker");
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(file)
    }

    fn status(&self) -> Status {
        let Some(pid) = self.read_pid().filter(|&pid| self.is_broker(pid)) else {
            return Status::Stopped;
        };
        match fs::read_to_string(self.bootstrap_file()) {
            Ok(bootstrap) if accepts_tcp(bootstrap.trim()) => Status::Running {
                pid,
                bootstrap: bootstrap.trim().to_owned(),
            },
            _ => Status::Unresponsive { pid },
        }
    }

    /// The secured listeners `secure.json` describes, if it exists and
    /// reads well (whether they answer is [`SecureSummary::answers`]).
    fn published_secure_listeners(&self) -> Option<SecureSummary> {
        SecureSummary::from_json(&fs::read_to_string(self.secure_file()).ok()?)
    }

    fn read_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `pid` is alive and is the broker started with our
    /// `server.properties` (not a recycled pid, nor another checkout's
    /// broker). Reads Linux's `/proc`.
    fn is_broker(&self, pid: u32) -> bool {
        // A zombie's cmdline reads empty, so an exited broker never matches.
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let props = self.server_properties();
        let mut args = cmdline.split(|&byte| byte == 0);
        args.clone().any(|arg| arg == b"kafka.Kafka")
            && args.any(|arg| arg == props.as_os_str().as_bytes())
    }

    fn remove_run_files(&self) -> Result<()> {
        for path in [self.pid_file(), self.bootstrap_file(), self.secure_file()] {
            match fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => {
                    return Err(err).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Downloads the broker's jars into [`State::libs`] with Maven, unless a
    /// previous run completed that already from the same [`pom_xml`].
    fn resolve_jars(&self) -> Result<()> {
        let libs = self.libs();
        let marker = libs.join(".complete");
        let pom_text = pom_xml();
        if fs::read_to_string(&marker).is_ok_and(|done| done == pom_text) {
            return Ok(());
        }
        require_on_path(&["mvn"])?;
        eprintln!(
            "xtask: resolving the Apache Kafka {KAFKA_VERSION} jars with Maven into {} \
             (first run, or a changed pom.xml)",
            libs.display()
        );
        if libs.exists() {
            fs::remove_dir_all(&libs).with_context(|| format!("removing {}", libs.display()))?;
        }
        let maven_dir = self.dir.join("maven");
        fs::create_dir_all(&maven_dir)
            .with_context(|| format!("creating {}", maven_dir.display()))?;
        let pom = maven_dir.join("pom.xml");
        write(&pom, &pom_text)?;
        let mut output_dir = OsString::from("-DoutputDirectory=");
        output_dir.push(&libs);
        let output = Command::new("mvn")
            .args(["-B", "-q", "-Dstyle.color=never", "-f"])
            .arg(&pom)
            .arg("dependency:copy-dependencies")
            .arg(output_dir)
            .arg("-DincludeScope=runtime")
            .current_dir(&maven_dir)
            .stdin(Stdio::null())
            .output()
            .context("running `mvn`")?;
        if !output.status.success() {
            bail!(
                "`mvn dependency:copy-dependencies` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for jar in [
            format!("kafka_2.13-{KAFKA_VERSION}.jar"),
            format!("kafka-tools-{KAFKA_VERSION}.jar"),
            format!("log4j-core-{LOG4J_VERSION}.jar"),
            format!("log4j-slf4j-impl-{LOG4J_VERSION}.jar"),
        ] {
            if !libs.join(&jar).is_file() {
                bail!("Maven finished but {jar} is not in {}", libs.display());
            }
        }
        write(&marker, &pom_text)
    }

    /// Formats a fresh [`State::data`] directory with a new cluster id and,
    /// for each of `users`, a SCRAM-SHA-256 and a SCRAM-SHA-512 credential.
    fn format_storage(&self, users: &[User]) -> Result<()> {
        let data = self.data();
        if data.exists() {
            fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        let random_uuid = self.storage_tool(&["random-uuid".into()], &[])?;
        let Some(cluster_id) = random_uuid.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
            bail!("`kafka.tools.StorageTool random-uuid` printed no cluster id");
        };
        let mut args: Vec<OsString> = vec![
            "format".into(),
            "-t".into(),
            cluster_id.into(),
            "-c".into(),
            self.server_properties().into(),
        ];
        for user in users {
            for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                args.push("--add-scram".into());
                args.push(
                    format!(
                        "{mechanism}=[name={},password={}]",
                        user.name, user.password
                    )
                    .into(),
                );
            }
        }
        let secrets: Vec<&str> = users.iter().map(|user| user.password.as_str()).collect();
        self.storage_tool(&args, &secrets)?;
        Ok(())
    }

    /// Runs `kafka.tools.StorageTool` and returns what it printed on stdout.
    /// `secrets` are blanked out of the error, which shows the arguments.
    fn storage_tool(&self, args: &[OsString], secrets: &[&str]) -> Result<String> {
        let output = Command::new("java")
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.tools.StorageTool")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running `java`")?;
        let shown = format!(
            "kafka.tools.StorageTool {}",
            args.join(" ".as_ref()).to_string_lossy()
        );
        checked_stdout(&shown, &output, secrets)
    }

    /// Creates the [`ACLS`] through the PLAINTEXT listener at `bootstrap`,
    /// with Kafka's `AclCommand`, one JVM per entry, all at once.
    fn create_acls(&self, bootstrap: &str) -> Result<()> {
        let started = Instant::now();
        thread::scope(|scope| {
            let runs: Vec<_> = ACLS
                .iter()
                .map(|&(principals, operations, resources)| {
                    scope.spawn(move || {
                        self.acl_command(bootstrap, principals, operations, resources)
                    })
                })
                .collect();
            for run in runs {
                run.join()
                    .map_err(|_| anyhow!("the thread running `AclCommand` panicked"))??;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        eprintln!(
            "xtask: ACLs created in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Runs `org.apache.kafka.tools.AclCommand --add` for prefixed resources.
    fn acl_command(
        &self,
        bootstrap: &str,
        principals: &[&str],
        operations: &[&str],
        resources: &[&str],
    ) -> Result<()> {
        let mut args = vec![
            "--bootstrap-server",
            bootstrap,
            "--add",
            "--resource-pattern-type",
            "prefixed",
        ];
        for principal in principals {
            args.extend(["--allow-principal", principal]);
        }
        for operation in operations {
            args.extend(["--operation", operation]);
        }
        args.extend(resources);
        let mut log4j = OsString::from("-Dlog4j2.configurationFile=");
        log4j.push(self.log4j_config());
        let output = Command::new("java")
            .args(QUICK_JVM)
            .arg(log4j)
            .arg("-cp")
            .arg(self.classpath())
            .arg("org.apache.kafka.tools.AclCommand")
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running `java`")?;
        let shown = format!("org.apache.kafka.tools.AclCommand {}", args.join(" "));
        checked_stdout(&shown, &output, &[])?;
        Ok(())
    }

    /// The TLS material in [`State::tls_dir`]: reused when complete, else
    /// made anew with `keytool` (see [`make_tls_material`]). When `openssl`
    /// is on `PATH`, also writes the client's key as PEM.
    fn ensure_tls(&self) -> Result<Tls> {
        let dir = self.tls_dir();
        let marker = dir.join(".complete");
        let password_file = dir.join("store-password");
        let password = if fs::read_to_string(&marker).is_ok_and(|done| done == TLS_MATERIAL_VERSION)
        {
            let password = fs::read_to_string(&password_file)
                .with_context(|| format!("reading {}", password_file.display()))?;
            eprintln!(
                "xtask: reusing the test CA and certificates in {}",
                dir.display()
            );
            password.trim().to_owned()
        } else {
            if !missing_from_path(&["keytool"]).is_empty() {
                bail!(
                    "`--secure` makes its TLS certificates with `keytool`, which comes with \
                     Java 17 but is not on PATH. {INSTALL_HINT}"
                );
            }
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let password = format!("store-pw-{}", random_hex(16)?);
            write(&password_file, &password)?;
            let started = Instant::now();
            eprintln!(
                "xtask: making a test CA and certificates in {}",
                dir.display()
            );
            make_tls_material(&dir, &password)?;
            write(&marker, TLS_MATERIAL_VERSION)?;
            eprintln!(
                "xtask: test CA and certificates made in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            password
        };
        let mut tls = Tls {
            dir,
            password,
            client_key_pem: None,
        };
        tls.client_key_pem = client_key_pem(&tls)?;
        Ok(tls)
    }

    /// Spawns the broker in its own process group, with stdout and stderr in
    /// [`State::log`].
    fn spawn_broker(&self) -> Result<Child> {
        let log_path = self.log();
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut log4j = OsString::from("-Dlog4j2.configurationFile=");
        log4j.push(self.log4j_config());
        Command::new("java")
            .arg("-Xmx1g")
            .arg(log4j)
            .arg("-cp")
            .arg(self.classpath())
            .arg("kafka.Kafka")
            .arg(self.server_properties())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("spawning the Kafka broker (`java ... kafka.Kafka`)")
    }

    /// Polls until the broker has logged [`READY_LINE`] and every address
    /// of `listening` accepts TCP connections.
    fn wait_until_ready(&self, broker: &mut Child, listening: &[String]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = broker.try_wait()? {
                bail!("the Kafka broker exited during start-up ({status})");
            }
            let logged = fs::read(self.log())
                .is_ok_and(|log| String::from_utf8_lossy(&log).contains(READY_LINE));
            if logged && listening.iter().all(|addr| accepts_tcp(addr)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the Kafka broker (pid {}) was not ready after {} s",
                    broker.id(),
                    START_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM to the broker, waits up to [`STOP_TIMEOUT`], then sends
    /// SIGKILL.
    fn terminate(&self, pid: u32) -> Result<()> {
        for (signal, timeout) in [("TERM", STOP_TIMEOUT), ("KILL", Duration::from_secs(10))] {
            if !self.is_broker(pid) {
                return Ok(());
            }
            if signal == "KILL" {
                eprintln!("xtask: Kafka broker (pid {pid}) ignored SIGTERM; sending SIGKILL");
            }
            // `kill` fails when the process has just exited; the wait below
            // sees that either way, so its exit status does not matter.
            Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .context("running `kill`")?;
            let deadline = Instant::now() + timeout;
            while self.is_broker(pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(100));
            }
        }
        if self.is_broker(pid) {
            bail!("the Kafka broker (pid {pid}) survived SIGKILL");
        }
        Ok(())
    }
}

/// Makes the TLS material in `dir` with `keytool` (EC P-256 keys, PKCS#12
/// keystores protected by `password`):
///
/// - `ca.p12` and `ca.pem`: a self-signed test CA;
/// - `broker.p12`: the broker's key and certificate (CN and only SAN
///   `localhost`), chained to the CA;
/// - `client.p12` and `client.pem`: the client's key and certificate
///   (`CN=tiered-kafka-client`), chained to the CA.
///
/// Each `keytool` run is a JVM of about a second, so the three keys are made
/// at the same time, then both certificates are signed at the same time.
fn make_tls_material(dir: &Path, password: &str) -> Result<()> {
    let keytool = |args: &[&str]| run_keytool(dir, password, args);
    let genkeypair = |alias: &str, dname: &str, extensions: &[&str]| {
        let mut args = vec![
            "-genkeypair",
            "-alias",
            alias,
            "-dname",
            dname,
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-validity",
            TLS_VALIDITY_DAYS,
        ];
        args.extend(extensions);
        let keystore = format!("{alias}.p12");
        args.extend(["-keystore", &keystore]);
        keytool(&args)
    };
    let certreq = |alias: &str| {
        keytool(&[
            "-certreq",
            "-alias",
            alias,
            "-keystore",
            &format!("{alias}.p12"),
            "-file",
            &format!("{alias}.csr"),
        ])
    };
    // Signs `<alias>.csr` with the CA into `<alias>.pem`, then installs the
    // chain (the certificate, then the CA's) in `<alias>.p12`.
    let sign = |alias: &str, extensions: &[&str]| -> Result<()> {
        let certificate = format!("{alias}.pem");
        let mut args = vec!["-gencert", "-alias", "ca", "-keystore", "ca.p12", "-infile"];
        let csr = format!("{alias}.csr");
        args.extend([csr.as_str(), "-outfile", &certificate, "-rfc"]);
        args.extend(["-validity", TLS_VALIDITY_DAYS]);
        args.extend(extensions);
        keytool(&args)?;
        let chain_path = dir.join(format!("{alias}-chain.pem"));
        let chain = [dir.join(&certificate), dir.join("ca.pem")]
            .iter()
            .map(|path| {
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            })
            .collect::<Result<String>>()?;
        write(&chain_path, &chain)?;
        keytool(&[
            "-importcert",
            "-alias",
            alias,
            "-file",
            &format!("{alias}-chain.pem"),
            "-keystore",
            &format!("{alias}.p12"),
            "-noprompt",
        ])
    };
    let client_dname = format!("CN={MTLS_USER}");
    all_at_once(vec![
        Box::new(|| {
            genkeypair(
                "ca",
                "CN=tiered-kafka test CA",
                &["-ext", "bc:c", "-ext", "KU:c=keyCertSign,cRLSign"],
            )?;
            keytool(&[
                "-exportcert",
                "-rfc",
                "-alias",
                "ca",
                "-keystore",
                "ca.p12",
                "-file",
                "ca.pem",
            ])
        }),
        Box::new(|| {
            genkeypair("broker", "CN=localhost", &[])?;
            certreq("broker")
        }),
        Box::new(|| {
            genkeypair("client", &client_dname, &[])?;
            certreq("client")
        }),
    ])?;
    all_at_once(vec![
        Box::new(|| {
            sign(
                "broker",
                &["-ext", "SAN=DNS:localhost", "-ext", "EKU=serverAuth"],
            )
        }),
        Box::new(|| sign("client", &["-ext", "EKU=clientAuth"])),
    ])
}

/// A step of [`make_tls_material`].
type Step<'a> = Box<dyn FnOnce() -> Result<()> + Send + 'a>;

/// Runs the steps on threads of their own and waits for all of them; the
/// first error wins.
fn all_at_once(steps: Vec<Step<'_>>) -> Result<()> {
    thread::scope(|scope| {
        let running: Vec<_> = steps.into_iter().map(|step| scope.spawn(step)).collect();
        let mut result = Ok(());
        for step in running {
            let outcome = step
                .join()
                .map_err(|_| anyhow!("a thread making TLS material panicked"))
                .and_then(|outcome| outcome);
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// Runs `keytool` in `dir` with the store password from
/// [`STORE_PASSWORD_ENV`] (`-storepass:env`, added here).
fn run_keytool(dir: &Path, password: &str, args: &[&str]) -> Result<()> {
    let output = Command::new("keytool")
        .args(QUICK_JVM.iter().map(|option| format!("-J{option}")))
        .args(args)
        .args(["-storetype", "PKCS12", "-storepass:env", STORE_PASSWORD_ENV])
        .env(STORE_PASSWORD_ENV, password)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running `keytool`")?;
    checked_stdout(&format!("keytool {}", args.join(" ")), &output, &[password])?;
    Ok(())
}

/// The client's private key as PEM (`client.key`), extracted from its
/// keystore with `openssl` once; `None` without `openssl` on `PATH`
/// (`keytool` cannot export private keys).
fn client_key_pem(tls: &Tls) -> Result<Option<PathBuf>> {
    let key = tls.dir.join("client.key");
    if key.is_file() {
        return Ok(Some(key));
    }
    if !missing_from_path(&["openssl"]).is_empty() {
        eprintln!(
            "xtask: no `openssl` on PATH: the client key is in {} only, not as PEM",
            tls.client_keystore().display()
        );
        return Ok(None);
    }
    let mut passin = OsString::from("env:");
    passin.push(STORE_PASSWORD_ENV);
    let partial = tls.dir.join("client.key.partial");
    let output = Command::new("openssl")
        .args(["pkcs12", "-nocerts", "-nodes", "-in"])
        .arg(tls.client_keystore())
        .arg("-passin")
        .arg(passin)
        .arg("-out")
        .arg(&partial)
        .env(STORE_PASSWORD_ENV, &tls.password)
        .stdin(Stdio::null())
        .output()
        .context("running `openssl`")?;
    checked_stdout("openssl pkcs12 -nocerts -nodes", &output, &[&tls.password])?;
    fs::rename(&partial, &key)
        .with_context(|| format!("renaming {} to {}", partial.display(), key.display()))?;
    Ok(Some(key))
}

/// Standard output of a finished tool, or an error naming it (as `shown`)
/// with its exit status and output; `secrets` are blanked out of both.
pub(crate) fn checked_stdout(shown: &str, output: &Output, secrets: &[&str]) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let text = format!(
            "`{shown}` failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        bail!("{}", redact(&text, secrets));
    }
    Ok(stdout)
}

/// `text` with every occurrence of each secret replaced by `<redacted>`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret, "<redacted>")
        })
}

/// The broker's configuration: one KRaft node that is broker and controller,
/// listening on 127.0.0.1 only; with `secure`, also its `SASL_SSL` and mTLS
/// listeners (advertised as `localhost`) and their settings.
fn server_properties(
    port: u16,
    controller_port: u16,
    data: &Path,
    secure: Option<&SecureListeners>,
) -> String {
    let mut listeners =
        format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}");
    let mut advertised = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut protocols = String::from("PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
    if let Some(secure) = secure {
        let (sasl, mtls) = (secure.sasl_ssl_port, secure.mtls_port);
        listeners.push_str(&format!(
            ",SASL_SSL://127.0.0.1:{sasl},MTLS://127.0.0.1:{mtls}"
        ));
        advertised.push_str(&format!(
            ",SASL_SSL://localhost:{sasl},MTLS://localhost:{mtls}"
        ));
        protocols.push_str(",SASL_SSL:SASL_SSL,MTLS:SSL");
    }
    let mut properties = format!(
        "\
# Written by `cargo xtask kafka start`.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listeners}
advertised.listeners={advertised}
controller.listener.names=CONTROLLER
listener.security.protocol.map={protocols}
inter.broker.listener.name=PLAINTEXT
log.dirs={}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
",
        data.display()
    );
    if let Some(secure) = secure {
        properties.push_str(&secure.server_properties());
    }
    properties
}

/// log4j2 configuration for the broker: INFO and above to standard output,
/// which [`State::spawn_broker`] sends to `broker.log` together with anything
/// else the JVM prints. `AclCommand` uses it too (its output is captured).
pub(crate) const LOG4J_CONFIG: &str = "\
# Written by `cargo xtask kafka start`.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
";

/// A Maven project whose runtime dependencies are the broker's jars, plus the
/// log4j2 binding for SLF4J 1.x (Kafka 4.4 logs through `slf4j-api` 1.7) so
/// the broker logs at all, plus the `kafka-tools` jar alone (for
/// `AclCommand`; its own dependencies, Kafka Connect and Jetty among them,
/// are excluded: the broker's jars cover what `AclCommand` needs).
fn pom_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `cargo xtask kafka start`: the jars of one Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tiered-kafka</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId>
        <artifactId>log4j-bom</artifactId>
        <version>{LOG4J_VERSION}</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version>
      <exclusions>
        <exclusion>
          <groupId>*</groupId>
          <artifactId>*</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
    </dependency>
  </dependencies>
</project>
"#
    )
}

/// Fails with an install hint unless every program in `programs` is on `PATH`.
pub(crate) fn require_on_path(programs: &[&str]) -> Result<()> {
    let missing = missing_from_path(programs);
    if !missing.is_empty() {
        bail!(
            "Apache Kafka needs `java` (17 or later) and `mvn`; not on PATH: {}. {INSTALL_HINT}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// The programs of `programs` that are not on `PATH`.
fn missing_from_path<'a>(programs: &[&'a str]) -> Vec<&'a str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs
        .iter()
        .copied()
        .filter(|program| !std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .collect()
}

/// `count` distinct free TCP ports on 127.0.0.1: the client port, the
/// controller port, then the `SASL_SSL` and mTLS ports when asked for.
pub(crate) fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("finding a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Whether `addr` (`host:port`) accepts a TCP connection within a second.
pub(crate) fn accepts_tcp(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// `bytes` random bytes from the kernel, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Writes `contents` to `path`, naming the path on failure.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// The last `n` lines of the file at `path`, or why it could not be read.
pub(crate) fn last_lines(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(err) => format!("({err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secure_setup() -> SecureListeners {
        SecureListeners {
            plaintext_bootstrap: "127.0.0.1:9092".to_owned(),
            sasl_ssl_port: 9094,
            mtls_port: 9095,
            tls: Tls {
                dir: PathBuf::from("/tmp/kafka/tls"),
                password: "store-pw-0123".to_owned(),
                client_key_pem: None,
            },
            users: User::generate_all().expect("random passwords"),
        }
    }

    #[test]
    fn server_properties_use_both_ports_and_the_data_dir() {
        let props = server_properties(9092, 9093, Path::new("/tmp/kafka/data"), None);
        assert!(props.contains("controller.quorum.voters=1@127.0.0.1:9093\n"));
        assert!(
            props.contains("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n")
        );
        assert!(props.contains("advertised.listeners=PLAINTEXT://127.0.0.1:9092\n"));
        assert!(props.contains("log.dirs=/tmp/kafka/data\n"));
        assert!(!props.contains("authorizer"));
        assert!(!props.contains("SASL_SSL"));
    }

    #[test]
    fn secure_server_properties_add_listeners_users_and_authorizer() {
        let setup = secure_setup();
        let props = server_properties(9092, 9093, Path::new("/tmp/kafka/data"), Some(&setup));
        assert!(props.contains(
            "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,\
             SASL_SSL://127.0.0.1:9094,MTLS://127.0.0.1:9095\n"
        ));
        assert!(props.contains(
            "advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://localhost:9094,\
             MTLS://localhost:9095\n"
        ));
        assert!(props.contains("MTLS:SSL"));
        assert!(props.contains("listener.name.mtls.ssl.client.auth=required\n"));
        assert!(props.contains("super.users=User:ANONYMOUS;User:admin\n"));
        assert!(props.contains("allow.everyone.if.no.acl.found=false\n"));
        assert!(props.contains("ssl.keystore.location=/tmp/kafka/tls/broker.p12\n"));
        assert!(props.contains("ssl.truststore.location=/tmp/kafka/tls/ca.pem\n"));
        for user in &setup.users {
            assert!(
                props.contains(&format!(" user_{}=\"{}\"", user.name, user.password)),
                "{props}"
            );
        }
        // One value per key: Java's Properties keeps the last of duplicates.
        let mut keys: Vec<&str> = props
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('=').map(|(key, _)| key))
            .collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count, "a key is set twice:\n{props}");
    }

    #[test]
    fn users_get_distinct_long_passwords() {
        let users = User::generate_all().expect("random passwords");
        let names: Vec<&str> = users.iter().map(|user| user.name).collect();
        assert_eq!(names, ["admin", "alice", "no-topic-read", "no-group-read"]);
        for user in &users {
            assert!(user.password.starts_with(&format!("{}-pw-", user.name)));
            assert!(user.password.len() >= user.name.len() + 4 + 32);
        }
        let again = User::generate_all().expect("random passwords");
        assert_ne!(users[1].password, again[1].password);
    }

    #[test]
    fn acls_name_only_known_principals() {
        for (principals, operations, resources) in ACLS {
            assert!(!operations.is_empty());
            assert!(resources.contains(&ACL_PREFIX));
            for principal in principals {
                let name = principal.strip_prefix("User:").expect("a user principal");
                assert!(
                    name == MTLS_USER || USERS.iter().any(|&(user, _)| user == name),
                    "{principal}"
                );
            }
        }
    }

    #[test]
    fn secure_json_publishes_addresses_users_and_files() {
        let setup = secure_setup();
        let text = secure_json(&setup).expect("serialised");
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(json["format"], 1);
        assert_eq!(json["sasl_ssl_bootstrap"], "localhost:9094");
        assert_eq!(json["mtls_bootstrap"], "localhost:9095");
        assert_eq!(json["plaintext_bootstrap"], "127.0.0.1:9092");
        assert_eq!(json["ca_pem"], "/tmp/kafka/tls/ca.pem");
        assert_eq!(json["client_keystore_password"], "store-pw-0123");
        assert!(json["client_key_pem"].is_null());
        assert_eq!(json["users"][1]["name"], "alice");
        assert_eq!(
            json["users"][1]["password"],
            setup.users[1].password.as_str()
        );
        assert_eq!(json["users"][1]["mechanisms"][3], "OAUTHBEARER");
        let summary = SecureSummary::from_json(&text).expect("ports read back");
        assert_eq!((summary.sasl_ssl_port, summary.mtls_port), (9094, 9095));
        let described = summary.describe(Path::new("/tmp/kafka/secure.json"));
        for secret in setup.secrets() {
            assert!(!described.contains(secret), "{described}");
        }
    }

    #[test]
    fn redact_blanks_every_secret() {
        assert_eq!(
            redact("a=s3cret b=s3cret c=other", &["s3cret", ""]),
            "a=<redacted> b=<redacted> c=other"
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(4).expect("free ports");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{ports:?}");
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        let dir = std::env::temp_dir().join(format!("xtask-last-lines-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("log");
        fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(last_lines(&path, 2), "b\nc");
        assert_eq!(last_lines(&path, 10), "a\nb\nc");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn nodes_flag_picks_the_single_node_or_the_cluster() {
        assert_eq!(Nodes::from_flag(None).expect("no flag"), None);
        assert_eq!(
            Nodes::from_flag(Some(1)).expect("one node"),
            Some(Nodes::Single)
        );
        assert_eq!(
            Nodes::from_flag(Some(3)).expect("three nodes"),
            Some(Nodes::Cluster)
        );
        let error = Nodes::from_flag(Some(2)).expect_err("no two-node Kafka");
        assert!(error.to_string().contains("`--nodes 3`"), "{error}");
    }

    #[test]
    fn pom_pins_kafka_and_log4j() {
        let pom = pom_xml();
        assert!(
            pom.contains("<artifactId>kafka_2.13</artifactId>\n      <version>4.4.0</version>")
        );
        assert!(
            pom.contains("<artifactId>kafka-tools</artifactId>\n      <version>4.4.0</version>")
        );
        assert!(pom.contains("<version>2.25.5</version>"));
        assert!(pom.contains("log4j-slf4j-impl"));
    }
}
