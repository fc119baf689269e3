//! `examples/observability.rs` serves what it says: the example runs (as
//! `cargo run --example observability`), this test scrapes its `/metrics`
//! and `/health` endpoints, produces 300 records while it reads with 10 ms
//! of pretend work each, and watches the lag gauge rise and fall back to 0,
//! the message counter reach every record, and the probes answer.
//!
//! On the mock the example runs its own embedded cluster (it prints its
//! address, and the records are produced there); on Apache Kafka it is
//! given the test broker through `KAFKA_BROKERS`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_test_env::{BrokerKind, KafkaTestEnv, TestRecord};

const DEMO_MESSAGES: usize = 10;
const PRODUCED: usize = 300;
const PATIENCE: Duration = Duration::from_secs(60);

/// Kills the example if the test fails before it exits.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_example_serves_metrics_and_health_that_follow_the_consumer() {
    let env = common::env();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", "observability"])
        .env("OBSERVABILITY_ADDR", "127.0.0.1:0")
        .env("OBSERVABILITY_READ", (DEMO_MESSAGES + PRODUCED).to_string())
        .env("OBSERVABILITY_WORK_MS", "10")
        .env("OBSERVABILITY_LINGER_MS", "15000")
        .stdout(Stdio::piped());
    match env.kind() {
        BrokerKind::Mock { .. } => {
            command.env_remove("KAFKA_BROKERS");
        }
        _ => {
            command.env("KAFKA_BROKERS", env.bootstrap_servers());
        }
    }
    let mut example = Example(command.spawn().expect("cargo run --example observability"));
    let stdout = example.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut address, mut brokers, mut topic) = (None, None, None);
    while address.is_none() || brokers.is_none() || topic.is_none() {
        let line = lines
            .next()
            .expect("the example printed where it serves before exiting")
            .expect("stdout");
        println!("example: {line}");
        if let Some(value) = line.strip_prefix("serving http://") {
            address = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("brokers ") {
            brokers = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("topic ") {
            topic = Some(value.to_owned());
        }
    }
    let (address, brokers, topic) = (
        address.unwrap_or_default(),
        brokers.unwrap_or_default(),
        topic.unwrap_or_default(),
    );
    // The rest of its output, shown with the test's.
    let echo = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("example: {line}");
        }
    });

    // Ready once joined; the demo's records read, the lag settles at 0.
    wait_for(&format!("{address} ready"), || {
        get(&address, "/health/ready").is_ok_and(|(status, _)| status == 200)
    });
    wait_for("the lag gauge at 0 after the demo records", || {
        lag(&address, &topic) == Some(0.0)
    });

    let producer_env = KafkaTestEnv::external(&brokers).expect("the example's broker");
    producer_env
        .produce(
            &topic,
            (0..PRODUCED).map(|i| TestRecord::new(format!("more-{i}"), format!("value-{i}"))),
        )
        .expect("produce to the example's topic");

    // 300 records at 10 ms each take 3 s to read: the gauge, refreshed every
    // 500 ms, must show them waiting, then go back to 0.
    let mut highest = 0.0_f64;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lag = lag(&address, &topic);
        highest = highest.max(lag.unwrap_or(0.0));
        let read = counter(&address, "kafka_consumer_messages_total", &topic);
        if highest > 0.0 && lag == Some(0.0) && read == Some((DEMO_MESSAGES + PRODUCED) as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {lag:?} (highest seen {highest}), {read:?} messages read after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        highest >= 50.0,
        "the lag gauge never showed the records waiting: highest {highest}"
    );

    let (status, body) = get(&address, "/health").expect("GET /health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["live"], true, "{health}");
    assert_eq!(health["assigned_partitions"], 1, "{health}");
    let (status, body) = get(&address, "/health/live").expect("GET /health/live");
    assert_eq!((status, body.trim()), (200, "live"));

    let status = example.0.wait().expect("the example exits");
    assert!(status.success(), "the example failed: {status}");
    let _ = echo.join();
}

/// Waits (up to [`PATIENCE`]) for `condition`.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "not {what} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lag gauge of `topic`'s partition 0, if it was set yet.
fn lag(address: &str, topic: &str) -> Option<f64> {
    counter(address, "kafka_consumer_lag", topic)
}

/// The sum of metric `name` over `topic`'s series in `/metrics`.
fn counter(address: &str, name: &str, topic: &str) -> Option<f64> {
    let (_, body) = get(address, "/metrics").ok()?;
    let label = format!("topic=\"{topic}\"");
    let values: Vec<f64> = body
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `GET path` over HTTP/1.0: the status and the body.
fn get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
