//! The secured listeners of the Apache Kafka started by
//! `cargo xtask kafka start --secure`.
//!
//! Contract with `xtask`: while such a broker runs, `secure.json` beside
//! `bootstrap.txt` (`<target dir>/kafka/secure.json`) describes its secured
//! listeners, users and TLS files; `xtask` writes it once the broker's ACLs
//! exist and removes it when the broker stops. Its format (version 1):
//!
//! ```json
//! {
//!   "format": 1,
//!   "kafka_version": "4.4.0",
//!   "plaintext_bootstrap": "127.0.0.1:PORT",
//!   "sasl_ssl_bootstrap": "localhost:PORT",
//!   "sasl_ssl_port": 0,
//!   "sasl_mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"],
//!   "mtls_bootstrap": "localhost:PORT",
//!   "mtls_port": 0,
//!   "mtls_principal": "User:tiered-kafka-client",
//!   "ca_pem": "/abs/target/kafka/tls/ca.pem",
//!   "client_keystore": "/abs/target/kafka/tls/client.p12",
//!   "client_keystore_password": "...",
//!   "client_certificate_pem": "/abs/target/kafka/tls/client.pem",
//!   "client_key_pem": "/abs/target/kafka/tls/client.key",
//!   "acl_prefix": "secure-",
//!   "users": [
//!     {"name": "alice", "password": "...", "mechanisms": ["SCRAM-SHA-256", "..."], "access": "..."}
//!   ]
//! }
//! ```
//!
//! `client_key_pem` is `null` when `xtask` found no `openssl` to write it.

use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::choice::{BrokerChoice, BrokerKind};
use crate::{Backend, KafkaTestEnv, TestEnvError, local, unique_name};

/// The `format` of `secure.json` this crate reads.
const FORMAT: u32 = 1;

/// A SASL mechanism of the secured broker's `SASL_SSL` listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `SCRAM-SHA-256`: user name and password, checked against the SCRAM
    /// credential the broker stores.
    ScramSha256,
    /// `SCRAM-SHA-512`: as SCRAM-SHA-256, with SHA-512.
    ScramSha512,
    /// `PLAIN`: user name and password, checked against the listener's JAAS
    /// configuration.
    Plain,
    /// `OAUTHBEARER` with unsecured JWTs: librdkafka makes the token itself
    /// (`enable.sasl.oauthbearer.unsecure.jwt=true`, `sasl.oauthbearer.config=principal=<user>`)
    /// and the broker accepts any principal without a password.
    OAuthBearer,
}

impl SaslMechanism {
    /// Every mechanism the secured listener offers.
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::Plain,
        SaslMechanism::OAuthBearer,
    ];

    /// The name librdkafka and Kafka use, as in `sasl.mechanism`, e.g.
    /// `SCRAM-SHA-256`.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism called `name` (as [`name`](Self::name) gives it).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    /// Whether the mechanism authenticates with a password (all but
    /// OAUTHBEARER).
    pub fn uses_password(self) -> bool {
        self != SaslMechanism::OAuthBearer
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A user of the secured broker's `SASL_SSL` listener.
///
/// `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct SecuredUser {
    name: String,
    password: String,
    mechanisms: Vec<SaslMechanism>,
    access: String,
}

impl SecuredUser {
    /// The user name: `sasl.username`, and the principal `User:<name>` the
    /// ACLs name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password for SCRAM and PLAIN: random, new on every broker start.
    /// Keep it out of test output.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The mechanisms the user can authenticate with.
    pub fn mechanisms(&self) -> &[SaslMechanism] {
        &self.mechanisms
    }

    /// What the ACLs allow the user, in words (from `xtask`).
    pub fn access(&self) -> &str {
        &self.access
    }
}

impl fmt::Debug for SecuredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecuredUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("mechanisms", &self.mechanisms)
            .field("access", &self.access)
            .finish()
    }
}

/// The secured listeners of the local Apache Kafka started by
/// `cargo xtask kafka start --secure` (which `cargo xtask test` runs for its
/// `local` phase), read from its `secure.json`.
///
/// The broker is the one of [`KafkaTestEnv::local`]; besides its PLAINTEXT
/// listener (principal `User:ANONYMOUS`, a super user: every existing test
/// works unchanged) it has:
///
/// - a `SASL_SSL` listener with SCRAM-SHA-256, SCRAM-SHA-512, PLAIN and
///   OAUTHBEARER (unsecured JWTs), at [`sasl_ssl_bootstrap`](Self::sasl_ssl_bootstrap);
/// - an `SSL` listener that requires a client certificate (mTLS), at
///   [`mtls_bootstrap`](Self::mtls_bootstrap), principal
///   `User:tiered-kafka-client`.
///
/// Both advertise the host `localhost`, the only name in the broker's
/// certificate: bootstrapping at `127.0.0.1:<port>` instead fails hostname
/// verification. Authorization is `StandardAuthorizer` with
/// `allow.everyone.if.no.acl.found=false`; every ACL is on topics and groups
/// with the prefix `secure-` (use [`unique_topic`](Self::unique_topic) and
/// [`unique_group`](Self::unique_group)):
///
/// | user | may |
/// | --- | --- |
/// | [`ADMIN`](Self::ADMIN) | everything (super user) |
/// | [`ALICE`](Self::ALICE) and the mTLS client | READ, DESCRIBE topics `secure-*`; READ groups `secure-*` |
/// | [`NO_TOPIC_READ`](Self::NO_TOPIC_READ) | READ groups `secure-*`; nothing on topics |
/// | [`NO_GROUP_READ`](Self::NO_GROUP_READ) | READ, DESCRIBE topics `secure-*`; nothing on groups |
///
/// Every user has all four mechanisms (OAUTHBEARER accepts any name).
/// Create and fill topics through the PLAINTEXT listener with
/// [`plaintext_env`](Self::plaintext_env), then consume them through the
/// secured listeners.
///
/// `Debug` leaves the passwords out.
///
/// # Examples
///
/// ```no_run
/// use kafka_test_env::{SaslMechanism, SecuredBroker};
/// use rdkafka::consumer::{BaseConsumer, Consumer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `None` unless KAFKA_TEST_BROKER=local; an error if that broker has no secured listeners.
/// let Some(secured) = SecuredBroker::from_env()? else { return Ok(()) };
/// let env = secured.plaintext_env()?;
/// let topic = secured.unique_topic("example");
/// env.create_topic(&topic, 1)?;
/// env.produce_test_messages(&topic, 3)?;
///
/// // The env's consumer settings, then the secured listener's on top.
/// let mut config = env.consumer_config(&secured.unique_group("example"));
/// for (key, value) in secured.sasl_properties(SaslMechanism::ScramSha512, SecuredBroker::ALICE)? {
///     config.set(key, value);
/// }
/// let consumer: BaseConsumer = config.create()?;
/// consumer.subscribe(&[&topic])?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SecuredBroker {
    file: PathBuf,
    plaintext_bootstrap: String,
    sasl_ssl_bootstrap: String,
    sasl_ssl_port: u16,
    mtls_bootstrap: String,
    mtls_port: u16,
    mtls_principal: String,
    ca_location: PathBuf,
    client_keystore_location: PathBuf,
    client_keystore_password: String,
    client_certificate_location: PathBuf,
    client_key_location: Option<PathBuf>,
    acl_prefix: String,
    users: Vec<SecuredUser>,
}

/// `secure.json` as `xtask` writes it.
#[derive(Deserialize)]
struct SecureFile {
    format: u32,
    plaintext_bootstrap: String,
    sasl_ssl_bootstrap: String,
    sasl_ssl_port: u16,
    mtls_bootstrap: String,
    mtls_port: u16,
    mtls_principal: String,
    ca_pem: PathBuf,
    client_keystore: PathBuf,
    client_keystore_password: String,
    client_certificate_pem: PathBuf,
    client_key_pem: Option<PathBuf>,
    acl_prefix: String,
    users: Vec<UserEntry>,
}

/// One user in `secure.json`.
#[derive(Deserialize)]
struct UserEntry {
    name: String,
    password: String,
    mechanisms: Vec<String>,
    access: String,
}

impl SecuredBroker {
    /// The super user: may do everything.
    pub const ADMIN: &'static str = "admin";
    /// May READ and DESCRIBE topics and READ groups with the prefix
    /// `secure-`: what a consumer needs.
    pub const ALICE: &'static str = "alice";
    /// May READ groups with the prefix `secure-`, but nothing on topics.
    pub const NO_TOPIC_READ: &'static str = "no-topic-read";
    /// May READ and DESCRIBE topics with the prefix `secure-`, but nothing on
    /// groups.
    pub const NO_GROUP_READ: &'static str = "no-group-read";

    /// The secured listeners of the local broker, read from its
    /// `secure.json`, after checking that they and the PLAINTEXT listener
    /// accept TCP connections.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::SecuredBrokerNotRunning`] naming the file, when it is
    /// missing (no broker, or one started without `--secure`), unreadable, of
    /// another format, or names listeners that do not answer.
    pub fn local() -> Result<SecuredBroker, TestEnvError> {
        let path = local::secure_file();
        let not_running = |detail: String| TestEnvError::SecuredBrokerNotRunning { detail };
        let text = std::fs::read_to_string(&path).map_err(|error| {
            not_running(format!(
                "cannot read {}: {error}; it exists only while a broker started with \
                 `--secure` runs",
                path.display()
            ))
        })?;
        let secured = Self::parse(&text, &path).map_err(not_running)?;
        for (listener, address) in [
            ("PLAINTEXT", secured.plaintext_bootstrap.clone()),
            ("SASL_SSL", format!("127.0.0.1:{}", secured.sasl_ssl_port)),
            ("mTLS", format!("127.0.0.1:{}", secured.mtls_port)),
        ] {
            local::probe(&address).map_err(|detail| {
                not_running(format!(
                    "{} names the {listener} listener {address}, but {detail}",
                    path.display()
                ))
            })?;
        }
        Ok(secured)
    }

    /// The secured listeners when `KAFKA_TEST_BROKER=local` (as
    /// [`local`](Self::local)), `None` for any other broker choice: tests of
    /// the secured listeners return early then (the mock cluster has no
    /// TLS or SASL), and run in `cargo xtask test`'s `local` phase.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::UnknownBrokerChoice`] for a bad `KAFKA_TEST_BROKER`;
    /// as [`local`](Self::local) when it is `local`.
    pub fn from_env() -> Result<Option<SecuredBroker>, TestEnvError> {
        match crate::choice_from_env()? {
            BrokerChoice::Local => Self::local().map(Some),
            _ => Ok(None),
        }
    }

    /// Reads the text of `secure.json` (found at `path`); the error is the
    /// detail for [`TestEnvError::SecuredBrokerNotRunning`].
    fn parse(text: &str, path: &Path) -> Result<SecuredBroker, String> {
        let file: SecureFile = serde_json::from_str(text)
            .map_err(|error| format!("{} is not what xtask writes: {error}", path.display()))?;
        if file.format != FORMAT {
            return Err(format!(
                "{} has format {}, this kafka-test-env reads format {FORMAT}; restart the broker \
                 with this checkout's `cargo xtask kafka start --secure`",
                path.display(),
                file.format
            ));
        }
        let users = file
            .users
            .into_iter()
            .map(|user| {
                let mechanisms = user
                    .mechanisms
                    .iter()
                    .map(|name| {
                        SaslMechanism::from_name(name).ok_or_else(|| {
                            format!(
                                "{} gives user {:?} the unknown SASL mechanism {name:?}",
                                path.display(),
                                user.name
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(SecuredUser {
                    name: user.name,
                    password: user.password,
                    mechanisms,
                    access: user.access,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SecuredBroker {
            file: path.to_path_buf(),
            plaintext_bootstrap: file.plaintext_bootstrap,
            sasl_ssl_bootstrap: file.sasl_ssl_bootstrap,
            sasl_ssl_port: file.sasl_ssl_port,
            mtls_bootstrap: file.mtls_bootstrap,
            mtls_port: file.mtls_port,
            mtls_principal: file.mtls_principal,
            ca_location: file.ca_pem,
            client_keystore_location: file.client_keystore,
            client_keystore_password: file.client_keystore_password,
            client_certificate_location: file.client_certificate_pem,
            client_key_location: file.client_key_pem,
            acl_prefix: file.acl_prefix,
            users,
        })
    }

    /// The `secure.json` this was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A [`KafkaTestEnv`] on the same broker's PLAINTEXT listener, whose
    /// principal (`User:ANONYMOUS`) is a super user: create topics and
    /// produce with it, and take its
    /// [`consumer_config`](KafkaTestEnv::consumer_config) as the base of a
    /// secured consumer's configuration.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a check of the broker.
    pub fn plaintext_env(&self) -> Result<KafkaTestEnv, TestEnvError> {
        Ok(KafkaTestEnv::with_backend(
            BrokerKind::Local {
                bootstrap: self.plaintext_bootstrap.clone(),
            },
            Backend::Remote,
        ))
    }

    /// The PLAINTEXT listener, `127.0.0.1:PORT` (the same as
    /// [`KafkaTestEnv::local`]'s).
    pub fn plaintext_bootstrap(&self) -> &str {
        &self.plaintext_bootstrap
    }

    /// The `SASL_SSL` listener, `localhost:PORT`.
    pub fn sasl_ssl_bootstrap(&self) -> &str {
        &self.sasl_ssl_bootstrap
    }

    /// The port of the `SASL_SSL` listener: `127.0.0.1:{port}` reaches it
    /// too, but fails hostname verification.
    pub fn sasl_ssl_port(&self) -> u16 {
        self.sasl_ssl_port
    }

    /// The mTLS listener (`SSL`, client certificate required), `localhost:PORT`.
    pub fn mtls_bootstrap(&self) -> &str {
        &self.mtls_bootstrap
    }

    /// The port of the mTLS listener.
    pub fn mtls_port(&self) -> u16 {
        self.mtls_port
    }

    /// The principal of an mTLS client with [`client_keystore_location`](Self::client_keystore_location):
    /// `User:tiered-kafka-client`.
    pub fn mtls_principal(&self) -> &str {
        &self.mtls_principal
    }

    /// The test CA's certificate (PEM), for `ssl.ca.location`. Without it,
    /// librdkafka trusts only the system's CAs and refuses the broker.
    pub fn ca_location(&self) -> &Path {
        &self.ca_location
    }

    /// The mTLS client's key and certificate chain (PKCS#12), for
    /// `ssl.keystore.location`.
    pub fn client_keystore_location(&self) -> &Path {
        &self.client_keystore_location
    }

    /// The password of [`client_keystore_location`](Self::client_keystore_location),
    /// for `ssl.keystore.password`. Keep it out of test output.
    pub fn client_keystore_password(&self) -> &str {
        &self.client_keystore_password
    }

    /// The mTLS client's certificate (PEM), for `ssl.certificate.location`.
    pub fn client_certificate_location(&self) -> &Path {
        &self.client_certificate_location
    }

    /// The mTLS client's private key (PEM, unencrypted), for
    /// `ssl.key.location`; `None` when `xtask` had no `openssl` to write it.
    pub fn client_key_location(&self) -> Option<&Path> {
        self.client_key_location.as_deref()
    }

    /// The prefix of the topics and groups the ACLs cover: `secure-`.
    pub fn acl_prefix(&self) -> &str {
        &self.acl_prefix
    }

    /// Every user of the `SASL_SSL` listener.
    pub fn users(&self) -> &[SecuredUser] {
        &self.users
    }

    /// The user called `name`, e.g. [`ALICE`](Self::ALICE).
    ///
    /// # Errors
    ///
    /// [`TestEnvError::InvalidArgument`] naming the known users when there
    /// is none of that name.
    pub fn user(&self, name: &str) -> Result<&SecuredUser, TestEnvError> {
        self.users
            .iter()
            .find(|user| user.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.users.iter().map(|user| user.name.as_str()).collect();
                TestEnvError::InvalidArgument {
                    message: format!(
                        "the secured broker has no user {name:?}; its users: {} (see {})",
                        known.join(", "),
                        self.file.display()
                    ),
                }
            })
    }

    /// The password of the user called `name`. Keep it out of test output.
    ///
    /// # Errors
    ///
    /// As [`user`](Self::user).
    pub fn password(&self, name: &str) -> Result<&str, TestEnvError> {
        Ok(self.user(name)?.password())
    }

    /// A topic name that the ACLs cover: `secure-{prefix}-{pid}-{time}-{counter}`,
    /// unique like [`KafkaTestEnv::unique_topic`].
    pub fn unique_topic(&self, prefix: &str) -> String {
        unique_name(&format!("{}{prefix}", self.acl_prefix))
    }

    /// A group id that the ACLs cover, unique like
    /// [`unique_topic`](Self::unique_topic).
    pub fn unique_group(&self, prefix: &str) -> String {
        unique_name(&format!("{}{prefix}", self.acl_prefix))
    }

    /// The librdkafka properties that connect as user `name` with
    /// `mechanism` over `SASL_SSL`, trusting the test CA:
    /// `bootstrap.servers` ([`sasl_ssl_bootstrap`](Self::sasl_ssl_bootstrap)),
    /// `broker.address.family=v4`, `security.protocol=SASL_SSL`,
    /// `ssl.ca.location`, `sasl.mechanism`, and `sasl.username` and
    /// `sasl.password`, or for OAUTHBEARER
    /// `enable.sasl.oauthbearer.unsecure.jwt=true` and
    /// `sasl.oauthbearer.config=principal=<name>`.
    ///
    /// Later entries of a list win when applied in order, so a test can
    /// append a changed entry (a wrong password, another bootstrap) to make
    /// a broken variant.
    ///
    /// # Errors
    ///
    /// [`TestEnvError::InvalidArgument`] when there is no user `name`.
    pub fn sasl_properties(
        &self,
        mechanism: SaslMechanism,
        name: &str,
    ) -> Result<Vec<(String, String)>, TestEnvError> {
        let user = self.user(name)?;
        let mut properties = self.tls_properties(&self.sasl_ssl_bootstrap, "SASL_SSL");
        properties.push(pair("sasl.mechanism", mechanism.name()));
        if mechanism.uses_password() {
            properties.push(pair("sasl.username", &user.name));
            properties.push(pair("sasl.password", &user.password));
        } else {
            properties.push(pair("enable.sasl.oauthbearer.unsecure.jwt", "true"));
            properties.push(pair(
                "sasl.oauthbearer.config",
                &format!("principal={}", user.name),
            ));
        }
        Ok(properties)
    }

    /// [`sasl_properties`](Self::sasl_properties) as a [`ClientConfig`].
    ///
    /// # Errors
    ///
    /// As [`sasl_properties`](Self::sasl_properties).
    pub fn sasl_config(
        &self,
        mechanism: SaslMechanism,
        name: &str,
    ) -> Result<ClientConfig, TestEnvError> {
        Ok(client_config(&self.sasl_properties(mechanism, name)?))
    }

    /// The librdkafka properties that connect to the mTLS listener with the
    /// client certificate from the PKCS#12 keystore: `bootstrap.servers`
    /// ([`mtls_bootstrap`](Self::mtls_bootstrap)),
    /// `broker.address.family=v4`, `security.protocol=SSL`,
    /// `ssl.ca.location`, `ssl.keystore.location` and
    /// `ssl.keystore.password`. The principal is
    /// [`mtls_principal`](Self::mtls_principal).
    pub fn mtls_properties(&self) -> Vec<(String, String)> {
        let mut properties = self.tls_properties(&self.mtls_bootstrap, "SSL");
        properties.push(pair(
            "ssl.keystore.location",
            &self.client_keystore_location.to_string_lossy(),
        ));
        properties.push(pair(
            "ssl.keystore.password",
            &self.client_keystore_password,
        ));
        properties
    }

    /// As [`mtls_properties`](Self::mtls_properties), with the client
    /// certificate and key as PEM files (`ssl.certificate.location`,
    /// `ssl.key.location`) instead of the keystore; `None` when there is no
    /// PEM key ([`client_key_location`](Self::client_key_location)).
    pub fn mtls_pem_properties(&self) -> Option<Vec<(String, String)>> {
        let key = self.client_key_location.as_ref()?;
        let mut properties = self.tls_properties(&self.mtls_bootstrap, "SSL");
        properties.push(pair(
            "ssl.certificate.location",
            &self.client_certificate_location.to_string_lossy(),
        ));
        properties.push(pair("ssl.key.location", &key.to_string_lossy()));
        Some(properties)
    }

    /// [`mtls_properties`](Self::mtls_properties) as a [`ClientConfig`].
    pub fn mtls_config(&self) -> ClientConfig {
        client_config(&self.mtls_properties())
    }

    /// What every TLS connection to a secured listener needs.
    fn tls_properties(&self, bootstrap: &str, protocol: &str) -> Vec<(String, String)> {
        vec![
            pair("bootstrap.servers", bootstrap),
            pair("broker.address.family", "v4"),
            pair("security.protocol", protocol),
            pair("ssl.ca.location", &self.ca_location.to_string_lossy()),
        ]
    }
}

impl fmt::Debug for SecuredBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecuredBroker")
            .field("file", &self.file)
            .field("plaintext_bootstrap", &self.plaintext_bootstrap)
            .field("sasl_ssl_bootstrap", &self.sasl_ssl_bootstrap)
            .field("mtls_bootstrap", &self.mtls_bootstrap)
            .field("mtls_principal", &self.mtls_principal)
            .field("ca_location", &self.ca_location)
            .field("client_keystore_location", &self.client_keystore_location)
            .field("client_keystore_password", &"<redacted>")
            .field(
                "client_certificate_location",
                &self.client_certificate_location,
            )
            .field("client_key_location", &self.client_key_location)
            .field("acl_prefix", &self.acl_prefix)
            .field("users", &self.users)
            .finish()
    }
}

/// A [`ClientConfig`] with `properties` set in order (a later entry for the
/// same key wins).
pub fn client_config(properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "acl_prefix": "secure-",
      "ca_pem": "/t/kafka/tls/ca.pem",
      "client_certificate_pem": "/t/kafka/tls/client.pem",
      "client_key_pem": null,
      "client_keystore": "/t/kafka/tls/client.p12",
      "client_keystore_password": "store-pw-secret-1",
      "format": 1,
      "kafka_version": "4.4.0",
      "mtls_bootstrap": "localhost:9095",
      "mtls_port": 9095,
      "mtls_principal": "User:tiered-kafka-client",
      "plaintext_bootstrap": "127.0.0.1:9092",
      "sasl_mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"],
      "sasl_ssl_bootstrap": "localhost:9094",
      "sasl_ssl_port": 9094,
      "users": [
        {"name": "alice", "password": "alice-pw-secret-2", "access": "reads",
         "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"]}
      ]
    }"#;

    fn sample() -> SecuredBroker {
        SecuredBroker::parse(SAMPLE, Path::new("/t/kafka/secure.json")).expect("sample parses")
    }

    fn get<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
        properties
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn scram_properties_carry_user_password_and_ca() {
        let secured = sample();
        let properties = secured
            .sasl_properties(SaslMechanism::ScramSha256, SecuredBroker::ALICE)
            .expect("alice exists");
        assert_eq!(
            get(&properties, "bootstrap.servers"),
            Some("localhost:9094")
        );
        assert_eq!(get(&properties, "security.protocol"), Some("SASL_SSL"));
        assert_eq!(get(&properties, "sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(get(&properties, "sasl.username"), Some("alice"));
        assert_eq!(get(&properties, "sasl.password"), Some("alice-pw-secret-2"));
        assert_eq!(
            get(&properties, "ssl.ca.location"),
            Some("/t/kafka/tls/ca.pem")
        );
        let config = client_config(&properties);
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
    }

    #[test]
    fn oauthbearer_properties_name_the_principal_and_no_password() {
        let properties = sample()
            .sasl_properties(SaslMechanism::OAuthBearer, SecuredBroker::ALICE)
            .expect("alice exists");
        assert_eq!(get(&properties, "sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(
            get(&properties, "enable.sasl.oauthbearer.unsecure.jwt"),
            Some("true")
        );
        assert_eq!(
            get(&properties, "sasl.oauthbearer.config"),
            Some("principal=alice")
        );
        assert_eq!(get(&properties, "sasl.password"), None);
    }

    #[test]
    fn mtls_properties_use_the_keystore() {
        let secured = sample();
        let properties = secured.mtls_properties();
        assert_eq!(
            get(&properties, "bootstrap.servers"),
            Some("localhost:9095")
        );
        assert_eq!(get(&properties, "security.protocol"), Some("SSL"));
        assert_eq!(
            get(&properties, "ssl.keystore.location"),
            Some("/t/kafka/tls/client.p12")
        );
        assert_eq!(
            get(&properties, "ssl.keystore.password"),
            Some("store-pw-secret-1")
        );
        assert!(secured.mtls_pem_properties().is_none());
    }

    #[test]
    fn unknown_users_and_formats_are_named() {
        let secured = sample();
        let error = secured
            .sasl_properties(SaslMechanism::Plain, "mallory")
            .expect_err("no such user");
        assert!(error.to_string().contains("\"mallory\""), "{error}");
        assert!(error.to_string().contains("alice"), "{error}");
        let error = SecuredBroker::parse(
            &SAMPLE.replace("\"format\": 1", "\"format\": 2"),
            Path::new("/x/secure.json"),
        )
        .expect_err("format 2 is refused");
        assert!(error.contains("/x/secure.json"), "{error}");
        assert!(error.contains("--secure"), "{error}");
    }

    #[test]
    fn debug_output_hides_passwords() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("alice"), "{text}");
    }

    #[test]
    fn names_round_trip_and_topics_carry_the_prefix() {
        for mechanism in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::from_name(mechanism.name()), Some(mechanism));
        }
        assert!(sample().unique_topic("t").starts_with("secure-t-"));
        assert!(sample().unique_group("g").starts_with("secure-g-"));
    }
}
