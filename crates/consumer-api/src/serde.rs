//! Codecs between Kafka's bytes and the application's types.
//!
//! A consumer needs a [`Decode`]; every [`Serde`] (which also encodes, for
//! producers and tests) is one. [`Json`], [`JsonSerde`], [`StringSerde`]
//! and [`BytesSerde`] cover the common cases.
//!
//! # Writing your own (Avro, Protobuf, ...)
//!
//! A codec is any `Send + Sync` type implementing [`Serde`]. An Avro codec
//! would hold its schema and call `apache_avro::from_avro_datum`; a Protobuf
//! one would call `prost::Message::decode`. The shape is always the same, as
//! in this codec for a fixed-width big-endian reading:
//!
//! ```
//! use consumer_api::{Serde, SerdeError};
//!
//! /// A temperature in hundredths of a degree, written as 4 big-endian bytes.
//! struct CentiCelsius;
//!
//! impl Serde<i32> for CentiCelsius {
//!     fn serialize(&self, value: &i32) -> Result<Vec<u8>, SerdeError> {
//!         Ok(value.to_be_bytes().to_vec())
//!     }
//!
//!     fn deserialize(&self, bytes: &[u8]) -> Result<i32, SerdeError> {
//!         let bytes: [u8; 4] = bytes
//!             .try_into()
//!             .map_err(|_| SerdeError::msg(format!("expected 4 bytes, got {}", bytes.len())))?;
//!         Ok(i32::from_be_bytes(bytes))
//!     }
//! }
//!
//! assert_eq!(CentiCelsius.deserialize(&[0, 0, 8, 52]).unwrap(), 2100);
//! assert!(CentiCelsius.deserialize(b"hot").is_err());
//! ```

use std::error::Error as StdError;

/// Serializes and deserializes values of type `T` to and from Kafka's bytes.
///
/// Consumers only decode: every `Serde` is a [`Decode`], which is what they
/// take, and a read-only codec implements [`Decode`] alone. `serialize` is
/// there so the same codec serves producers and tests.
pub trait Serde<T>: Send + Sync {
    /// Turns a value into bytes.
    ///
    /// # Errors
    ///
    /// A [`SerdeError`] saying why the value cannot be written.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError>;

    /// Turns bytes read from Kafka into a value.
    ///
    /// # Errors
    ///
    /// A [`SerdeError`] saying why the bytes are not a valid `T`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for Box<S> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        (**self).serialize(value)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
}

/// Turns Kafka's bytes into a `T`: all a consumer asks of a codec.
///
/// Every [`Serde`] is one. A codec that only reads (an Avro reader that
/// looks schemas up in a registry, a Protobuf decoder) implements just this,
/// and every consumer of this workspace takes it:
///
/// ```
/// use consumer_api::{Decode, SerdeError};
///
/// /// A reading in hundredths of a degree, written as 4 big-endian bytes.
/// struct CentiCelsius;
///
/// impl Decode<i32> for CentiCelsius {
///     fn decode(&self, bytes: &[u8]) -> Result<i32, SerdeError> {
///         let bytes: [u8; 4] = bytes
///             .try_into()
///             .map_err(|_| SerdeError::msg(format!("expected 4 bytes, got {}", bytes.len())))?;
///         Ok(i32::from_be_bytes(bytes))
///     }
/// }
///
/// assert_eq!(CentiCelsius.decode(&[0, 0, 8, 52]).unwrap(), 2100);
/// ```
pub trait Decode<T>: Send + Sync {
    /// Turns bytes read from Kafka into a value.
    ///
    /// # Errors
    ///
    /// A [`SerdeError`] saying why the bytes are not a valid `T`.
    fn decode(&self, bytes: &[u8]) -> Result<T, SerdeError>;
}

impl<T, S: Serde<T> + ?Sized> Decode<T> for S {
    fn decode(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        self.deserialize(bytes)
    }
}

/// Why a [`Serde`] could not convert a value; wraps the codec's own error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SerdeError(Box<dyn StdError + Send + Sync>);

impl SerdeError {
    /// Wraps a codec's error.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        SerdeError(error.into())
    }

    /// An error with just a message.
    pub fn msg(message: impl Into<String>) -> Self {
        SerdeError(message.into().into())
    }

    /// The codec's own error, for downcasting.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

/// JSON through `serde_json` for one type `T`: it names the type, so that a
/// consumer's key or value type is inferred from the codec, with no
/// turbofish.
///
/// ```
/// use consumer_api::{Json, Serde};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32 }
///
/// let orders = Json::<Order>::new();
/// assert_eq!(orders.deserialize(br#"{"id": 7}"#).unwrap(), Order { id: 7 });
/// ```
pub struct Json<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON codec of `T`.
    pub const fn new() -> Self {
        Json(std::marker::PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Json<T> {}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Serde<T> for Json<T> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        Serde::<T>::serialize(&JsonSerde, value)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        Serde::<T>::deserialize(&JsonSerde, bytes)
    }
}

/// JSON through `serde_json`, for any `T: Serialize + DeserializeOwned`
/// (the consumer's type says which; [`Json`] names it in the codec).
///
/// ```
/// use consumer_api::{JsonSerde, Serde};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32 }
///
/// let order: Order = JsonSerde.deserialize(br#"{"id": 7}"#).unwrap();
/// assert_eq!(order, Order { id: 7 });
/// // An error names the field at fault.
/// let error = Serde::<Order>::deserialize(&JsonSerde, br#"{"id": "seven"}"#).unwrap_err();
/// assert!(error.to_string().starts_with("field `id`: invalid type"), "{error}");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerde;

impl<T: serde::Serialize + serde::de::DeserializeOwned> Serde<T> for JsonSerde {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        serde_json::to_vec(value).map_err(SerdeError::new)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        // The common case pays for plain serde_json only: tracking the path
        // costs on every field, so it runs again only to name the field of
        // a failure.
        serde_json::from_slice(bytes).map_err(|_| json_error_with_path::<T>(bytes))
    }
}

/// Decodes `bytes` again, tracking the path, for the error that names the
/// field at fault.
fn json_error_with_path<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> SerdeError {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut document) {
        Err(error) => json_error(error),
        // Trailing characters after the value are an error, as with
        // `serde_json::from_slice`.
        Ok(_) => match document.end() {
            Err(error) => SerdeError::new(error),
            Ok(()) => SerdeError::msg("invalid JSON"),
        },
    }
}

/// A JSON error that names the field at fault (`items[2].price: invalid
/// type: ...`) when it is about one, with serde_json's line and column.
fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> SerdeError {
    let path = error.path().to_string();
    let about_data = error.inner().classify() == serde_json::error::Category::Data;
    if !about_data || path == "." || path.contains('?') {
        // Not about a known field: malformed, truncated or empty JSON.
        SerdeError::new(error.into_inner())
    } else {
        SerdeError::msg(format!("field `{path}`: {}", error.into_inner()))
    }
}

/// UTF-8 text; invalid UTF-8 is an error, never replaced.
///
/// ```
/// use consumer_api::{Serde, StringSerde};
///
/// assert_eq!(StringSerde.deserialize(b"hello").unwrap(), "hello");
/// assert!(StringSerde.deserialize(&[0xc3, 0x28]).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Result<Vec<u8>, SerdeError> {
        Ok(value.as_bytes().to_vec())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(SerdeError::new)
    }
}

/// The bytes as they are.
///
/// ```
/// use consumer_api::{BytesSerde, Serde};
///
/// assert_eq!(BytesSerde.deserialize(&[0, 159, 146]).unwrap(), vec![0, 159, 146]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Result<Vec<u8>, SerdeError> {
        Ok(value.clone())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}
