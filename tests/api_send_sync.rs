//! Every public handle can cross threads: consumers are shared (`Sync`),
//! streams move into tasks (`Send`), errors and messages travel anywhere.

use tiered_kafka::api::{
    ConfigError, ConsumerConfig, ConsumerError, ConsumerTier, Headers, KafkaStreamConsumer,
    Message, MessageStream, StringSerde,
};
use tiered_kafka::fast::{
    BufferedKafkaStream, Consumer, DedicatedKafkaStream, FastContext, KafkaStream, TieredConsumer,
};
use tiered_kafka::legacy::KafkaConsumer;

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}

/// A type that is neither `Unpin`-friendly nor trivially `Sync`, to show the
/// streams ask nothing of the message types beyond `Send`.
struct NotUnpin(std::marker::PhantomPinned);

#[test]
fn public_types_are_send_and_sync() {
    send::<Consumer<String, Vec<u8>>>();
    sync::<Consumer<String, Vec<u8>>>();
    send::<TieredConsumer<String, String>>();
    sync::<TieredConsumer<String, String>>();
    send::<KafkaConsumer<String, String, StringSerde, StringSerde>>();
    sync::<KafkaConsumer<String, String, StringSerde, StringSerde>>();
    send::<Box<dyn KafkaStreamConsumer<String, String>>>();
    sync::<Box<dyn KafkaStreamConsumer<String, String>>>();
    send::<FastContext>();
    sync::<FastContext>();

    send::<KafkaStream<'static, String, String>>();
    send::<BufferedKafkaStream<'static, String, String>>();
    send::<DedicatedKafkaStream<String, String>>();
    send::<MessageStream<'static, String, String>>();

    send::<Message<String, String>>();
    sync::<Message<String, String>>();
    send::<Headers>();
    send::<ConsumerError>();
    sync::<ConsumerError>();
    send::<ConfigError>();
    send::<ConsumerConfig>();
    send::<ConsumerTier>();
}

#[test]
fn streams_are_unpin_whatever_the_message_types() {
    unpin::<KafkaStream<'static, NotUnpin, NotUnpin>>();
    unpin::<BufferedKafkaStream<'static, NotUnpin, NotUnpin>>();
    unpin::<DedicatedKafkaStream<NotUnpin, NotUnpin>>();
}
