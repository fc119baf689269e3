//! Just enough of the Kafka protocol for `cargo xtask kafka start --nodes 3`
//! to tell when the cluster is ready, without a Kafka client library (the
//! xtask stays dependency-light): `Metadata` v8 and `FindCoordinator` v2,
//! both in the non-flexible encoding that Apache Kafka 2.1 to 4.x accept.
//!
//! One blocking TCP connection per request, with timeouts; errors name the
//! address and the request.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};

/// Timeout of connecting, and of each read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Larger answers are refused (a confused peer, not a Kafka broker).
const MAX_RESPONSE: usize = 16 << 20;
/// The `client.id` of our requests, as the brokers log it.
const CLIENT_ID: &str = "tiered-kafka-xtask";

const API_METADATA: i16 = 3;
const API_FIND_COORDINATOR: i16 = 10;

/// One broker of a `Metadata` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    /// `node.id`.
    pub(crate) id: i32,
    /// Its advertised host.
    pub(crate) host: String,
    /// Its advertised port.
    pub(crate) port: i32,
}

/// One partition of a `Metadata` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// The partition's index.
    pub(crate) id: i32,
    /// Kafka's error code for the partition (0: none).
    pub(crate) error: i16,
    /// The leader's node id, -1 without one.
    pub(crate) leader: i32,
    /// The replicas' node ids.
    pub(crate) replicas: Vec<i32>,
    /// The in-sync replicas' node ids.
    pub(crate) isr: Vec<i32>,
}

/// One topic of a `Metadata` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topic {
    /// Its name.
    pub(crate) name: String,
    /// Kafka's error code for the topic (0: none; 3: unknown topic).
    pub(crate) error: i16,
    /// Its partitions.
    pub(crate) partitions: Vec<Partition>,
}

/// A `Metadata` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// The live (registered, unfenced) brokers.
    pub(crate) brokers: Vec<Broker>,
    /// The node id the answer names as controller.
    pub(crate) controller: i32,
    /// The topics asked for.
    pub(crate) topics: Vec<Topic>,
}

/// Asks the broker at `addr` for the metadata of `topics` (never creating
/// them).
pub(crate) fn metadata(addr: &str, topics: &[&str]) -> Result<Metadata> {
    let mut body = Vec::new();
    put_i32(&mut body, len_i32(topics.len())?);
    for topic in topics {
        put_string(&mut body, topic)?;
    }
    // allow_auto_topic_creation, include_cluster_authorized_operations,
    // include_topic_authorized_operations.
    body.extend([0, 0, 0]);
    let answer = request(addr, API_METADATA, 8, &body)
        .with_context(|| format!("Metadata request to {addr}"))?;
    parse_metadata(&answer).with_context(|| format!("reading the Metadata answer of {addr}"))
}

/// Asks the broker at `addr` for the coordinator of consumer group `group`:
/// `Ok(Ok(node id))`, or `Ok(Err(error code))` while there is none (the
/// first ask also makes the broker create `__consumer_offsets`).
pub(crate) fn find_group_coordinator(addr: &str, group: &str) -> Result<Result<i32, i16>> {
    let mut body = Vec::new();
    put_string(&mut body, group)?;
    body.push(0); // key_type: group
    let answer = request(addr, API_FIND_COORDINATOR, 2, &body)
        .with_context(|| format!("FindCoordinator request to {addr}"))?;
    let mut reader = Reader::new(&answer);
    let _throttle_ms = reader.i32()?;
    let error = reader.i16()?;
    let _message = reader.nullable_string()?;
    let node = reader.i32()?;
    Ok(if error == 0 { Ok(node) } else { Err(error) })
}

/// Sends one request (header v1) and returns the answer's body (after the
/// v0 response header, whose correlation id is checked).
fn request(addr: &str, api_key: i16, api_version: i16, body: &[u8]) -> Result<Vec<u8>> {
    const CORRELATION_ID: i32 = 7;
    let socket: SocketAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let mut stream = TcpStream::connect_timeout(&socket, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut frame = Vec::with_capacity(body.len() + 32);
    put_i32(&mut frame, 0); // the size, set below
    put_i16(&mut frame, api_key);
    put_i16(&mut frame, api_version);
    put_i32(&mut frame, CORRELATION_ID);
    put_string(&mut frame, CLIENT_ID)?;
    frame.extend_from_slice(body);
    let size = len_i32(frame.len() - 4)?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&frame)?;

    let mut size = [0; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).context("a negative answer size")?;
    ensure!(
        (4..=MAX_RESPONSE).contains(&size),
        "an answer of {size} bytes"
    );
    let mut answer = vec![0; size];
    stream.read_exact(&mut answer)?;
    let correlation = i32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]);
    ensure!(
        correlation == CORRELATION_ID,
        "the answer is for request {correlation}, not {CORRELATION_ID}"
    );
    answer.drain(..4);
    Ok(answer)
}

/// Parses the body of a `Metadata` v8 answer.
fn parse_metadata(body: &[u8]) -> Result<Metadata> {
    let mut reader = Reader::new(body);
    let _throttle_ms = reader.i32()?;
    let brokers = reader.array(|reader| {
        let id = reader.i32()?;
        let host = reader.string()?;
        let port = reader.i32()?;
        let _rack = reader.nullable_string()?;
        Ok(Broker { id, host, port })
    })?;
    let _cluster_id = reader.nullable_string()?;
    let controller = reader.i32()?;
    let topics = reader.array(|reader| {
        let error = reader.i16()?;
        let name = reader.string()?;
        let _internal = reader.u8()?;
        let partitions = reader.array(|reader| {
            let error = reader.i16()?;
            let id = reader.i32()?;
            let leader = reader.i32()?;
            let _leader_epoch = reader.i32()?;
            let replicas = reader.array(Reader::i32)?;
            let isr = reader.array(Reader::i32)?;
            let _offline = reader.array(Reader::i32)?;
            Ok(Partition {
                id,
                error,
                leader,
                replicas,
                isr,
            })
        })?;
        let _topic_authorized_operations = reader.i32()?;
        Ok(Topic {
            name,
            error,
            partitions,
        })
    })?;
    Ok(Metadata {
        brokers,
        controller,
        topics,
    })
}

fn len_i32(len: usize) -> Result<i32> {
    i32::try_from(len).context("too long for the Kafka protocol")
}

fn put_i16(buf: &mut Vec<u8>, value: i16) {
    buf.extend(value.to_be_bytes());
}

fn put_i32(buf: &mut Vec<u8>, value: i32) {
    buf.extend(value.to_be_bytes());
}

fn put_string(buf: &mut Vec<u8>, value: &str) -> Result<()> {
    let len = i16::try_from(value.len()).context("a string too long for the Kafka protocol")?;
    put_i16(buf, len);
    buf.extend(value.as_bytes());
    Ok(())
}

/// Reads the big-endian fields of an answer, failing on a short one.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            bail!("the answer ends early");
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn nullable_string(&mut self) -> Result<Option<String>> {
        let len = self.i16()?;
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        Ok(Some(String::from_utf8_lossy(self.take(len)?).into_owned()))
    }

    fn string(&mut self) -> Result<String> {
        self.nullable_string()?
            .context("a null string where Kafka sends none")
    }

    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let len = self.i32()?;
        let Ok(len) = usize::try_from(len) else {
            return Ok(Vec::new());
        };
        ensure!(len <= self.rest.len(), "an array of {len} items");
        (0..len).map(|_| item(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_metadata_v8_answer() {
        let mut body = Vec::new();
        put_i32(&mut body, 0); // throttle
        put_i32(&mut body, 1); // one broker
        put_i32(&mut body, 2);
        put_string(&mut body, "127.0.0.1").expect("short");
        put_i32(&mut body, 9092);
        put_i16(&mut body, -1); // rack
        put_i16(&mut body, -1); // cluster id
        put_i32(&mut body, 1); // controller
        put_i32(&mut body, 1); // one topic
        put_i16(&mut body, 0);
        put_string(&mut body, "__consumer_offsets").expect("short");
        body.push(1);
        put_i32(&mut body, 1); // one partition
        put_i16(&mut body, 0);
        put_i32(&mut body, 0);
        put_i32(&mut body, 2); // leader
        put_i32(&mut body, 5); // epoch
        for list in [&[2, 1, 3][..], &[2, 1], &[]] {
            put_i32(&mut body, len_i32(list.len()).expect("short"));
            for id in list {
                put_i32(&mut body, *id);
            }
        }
        put_i32(&mut body, 0); // topic authorized operations
        put_i32(&mut body, 0); // cluster authorized operations
        let metadata = parse_metadata(&body).expect("parses");
        assert_eq!(
            metadata.brokers,
            [Broker {
                id: 2,
                host: "127.0.0.1".into(),
                port: 9092
            }]
        );
        assert_eq!(metadata.controller, 1);
        let partition = &metadata.topics[0].partitions[0];
        assert_eq!(partition.leader, 2);
        assert_eq!(partition.replicas, [2, 1, 3]);
        assert_eq!(partition.isr, [2, 1]);
        assert!(parse_metadata(&body[..body.len() - 12]).is_err());
    }
}
