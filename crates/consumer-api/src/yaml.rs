//! Loading [`ConsumerConfig`] from the YAML documents of the migration plan.
//!
//! Besides the fields themselves, a document may take values from outside it
//! (see [`ConsumerConfig::from_yaml_str`]): `${NAME}` reads an environment
//! variable, and an `extra` property written `<property>_file` reads its
//! value from a file. Neither the values so read nor the secret values
//! written inline appear in the errors of a document.

use std::collections::BTreeMap;
use std::env::VarError;
use std::path::Path;

use serde::Deserialize;

use crate::config::{ConsumerConfig, REDACTED, is_secret_property};
use crate::error::ConfigError;

/// The document: everything lives under a top-level `consumer:` key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    consumer: ConsumerConfig,
}

/// The ending of an `extra` key whose value is the path of a file holding
/// the property's value: `sasl.password_file: /run/secrets/kafka` sets
/// `sasl.password`. No librdkafka property name ends this way.
const FILE_SUFFIX: &str = "_file";

#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
impl ConsumerConfig {
    /// Reads a configuration from a YAML document with a top-level `consumer:` key.
    ///
    /// # Values from the environment and from files
    ///
    /// - `${NAME}` in `brokers`, `group_id`, `client_id` or an `extra`
    ///   value is replaced by the environment variable `NAME` (ASCII
    ///   letters, digits and `_`), as the whole value or inside it:
    ///   `"${KAFKA_HOST}:9092"`. `$${` is a literal `${`. What a variable
    ///   holds is used as it is, never read for references itself.
    /// - An `extra` property written with the suffix `_file` takes its value
    ///   from the file it names, without one trailing newline (`\n` or
    ///   `\r\n`): `sasl.password_file: /run/secrets/kafka-password` sets
    ///   `sasl.password`. The path may itself use `${NAME}`; a relative path
    ///   is relative to the process's working directory.
    ///
    /// Serializing the configuration writes the values read, not the
    /// references.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Yaml`] naming the field, the value and the line for a
    /// misspelt or missing field, a wrong type, an unknown tier or a
    /// `batch_size` of 0 (the source lines it quotes show the values of
    /// secret properties as `"[redacted]"`, see
    /// [`is_secret_property`](crate::is_secret_property));
    /// [`ConfigError::Variable`] for a variable that is not set,
    /// [`ConfigError::Reference`] for a `${` that starts no reference,
    /// [`ConfigError::ValueFile`] for a file that cannot be read,
    /// [`ConfigError::ValueAndFile`] for a property given both ways, each
    /// naming the field and never quoting a value; then what
    /// [`validate`](Self::validate) finds.
    ///
    /// # Examples
    ///
    /// ```
    /// use consumer_api::{ConsumerConfig, ConsumerTier};
    ///
    /// let config = ConsumerConfig::from_yaml_str(r#"
    /// consumer:
    ///   brokers: "localhost:9092"
    ///   group_id: "my-group"
    ///   performance_tier:
    ///     buffered:
    ///       batch_size: 32
    /// "#).unwrap();
    /// assert_eq!(config.performance_tier, Some(ConsumerTier::Buffered { batch_size: 32 }));
    ///
    /// let error = ConsumerConfig::from_yaml_str("consumer:\n  brokers: b:9092\n  group_idd: g\n")
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("group_idd"));
    ///
    /// // A secret from the environment; a variable that is not set is named.
    /// let error = ConsumerConfig::from_yaml_str(r#"
    /// consumer:
    ///   brokers: "localhost:9092"
    ///   group_id: "my-group"
    ///   extra:
    ///     sasl.password: "${TIERED_KAFKA_DOC_UNSET_VARIABLE}"
    /// "#).unwrap_err();
    /// assert!(error.to_string().contains(
    ///     "`extra.sasl.password` refers to environment variable `TIERED_KAFKA_DOC_UNSET_VARIABLE`, \
    ///      which is not set"
    /// ));
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ConfigError> {
        parse(yaml, "<string>")
    }

    /// Reads a configuration from a YAML file; see [`from_yaml_str`](Self::from_yaml_str).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read, otherwise as
    /// [`from_yaml_str`](Self::from_yaml_str), naming the file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let yaml = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        parse(&yaml, &path.display().to_string())
    }
}

fn parse(yaml: &str, origin: &str) -> Result<ConsumerConfig, ConfigError> {
    // Without the parser's snippet: it quotes the source lines around the
    // problem, secrets included. `yaml_error` quotes them redacted.
    let options = serde_saphyr::options! { with_snippet: false };
    let document: Document = serde_saphyr::from_str_with_options(yaml, options)
        .map_err(|error| yaml_error(yaml, origin, &error))?;
    let mut config = document.consumer;
    let outside = Outside {
        origin,
        variable: &|name| std::env::var(name),
        read_file: &|path| std::fs::read_to_string(path),
    };
    outside.resolve(&mut config)?;
    config.validate()?;
    Ok(config)
}

/// The [`ConfigError::Yaml`] for `error`, found in `yaml`: the parser's
/// message with the source lines around the problem, the values of secret
/// properties among them replaced by `"[redacted]"`.
///
/// The parser draws those lines itself, from the document it parses, so the
/// document is parsed again with its secret values redacted; when that
/// fails alike (same message, same place), its message is the one. When it
/// does not (the problem is in a secret's own value, whose redaction
/// removed it), the message is the first parse's without source lines, or,
/// if even that quotes a secret value, only where the problem is.
fn yaml_error(yaml: &str, origin: &str, error: &serde_saphyr::Error) -> ConfigError {
    let location = error.location();
    let bare = error.to_string();
    let redacted = redact_source(yaml);
    let again = serde_saphyr::from_str::<Document>(&redacted.text).err();
    let message = match again {
        Some(again)
            if again.without_snippet().to_string() == bare
                && place(again.location()) == place(location) =>
        {
            again.to_string()
        }
        _ if redacted
            .values
            .iter()
            .any(|value| bare.contains(value.as_str())) =>
        {
            match place(location) {
                Some((line, column)) => format!(
                    "line {line} column {column}: a secret property's value is malformed \
                     (the parser's message is withheld: it quotes the value)"
                ),
                None => "a secret property's value is malformed (the parser's message is \
                         withheld: it quotes the value)"
                    .to_owned(),
            }
        }
        _ => bare,
    };
    // A secret written in a form the line-wise redaction does not see
    // (`key : value`, flow style, an explicit key, an alias) may be among
    // the lines the parser quotes, or in its message: then only the place.
    let message = if holds_unredacted_secret(&redacted.text) {
        match place(location) {
            Some((line, column)) => format!(
                "line {line} column {column}: the document is malformed there (the parser's \
                 message is withheld: the document writes a secret property in a form that \
                 cannot be redacted, such as `key : value` or flow style)"
            ),
            None => "the document is malformed (the parser's message is withheld: the \
                     document writes a secret property in a form that cannot be redacted)"
                .to_owned(),
        }
    } else {
        message
    };
    ConfigError::Yaml {
        origin: origin.to_owned(),
        message,
        line: location.map(|location| location.line()),
    }
}

/// Whether `redacted` (the output of [`redact_source`]) still names a secret
/// property whose value it did not replace: a secret-looking word anywhere
/// but at the start of a `key: "[redacted]"` line, e.g. in flow style.
fn holds_unredacted_secret(redacted: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    redacted.lines().any(|line| {
        let content = line.split(" #").next().unwrap_or(line);
        let mut rest = content;
        while let Some(start) = rest.find(is_word) {
            let word_and_after = &rest[start..];
            let end = word_and_after
                .find(|c: char| !is_word(c))
                .unwrap_or(word_and_after.len());
            let (word, after) = word_and_after.split_at(end);
            if is_secret_property(word) {
                let redacted_here = after.strip_prefix(':').is_some_and(|value| {
                    value.trim_start().starts_with(&format!("\"{REDACTED}\""))
                });
                if !redacted_here {
                    return true;
                }
            }
            rest = after;
        }
        false
    })
}

/// Line and column of a parser location: what two parses of documents of
/// different lengths (one redacted) can agree on, unlike byte offsets.
fn place(location: Option<serde_saphyr::Location>) -> Option<(u64, u64)> {
    location.map(|location| (location.line(), location.column()))
}

/// A YAML document with the values of secret properties replaced, and the
/// values it replaced.
struct RedactedSource {
    /// The document, line for line: a secret key's line ends with
    /// `"[redacted]"` after its colon, and the more indented lines after it
    /// (a block scalar, a value continued on further lines) are blank.
    text: String,
    /// The replaced values as written (trimmed, and without quotes and
    /// comment), to look for in a message.
    values: Vec<String>,
}

/// `yaml` with the values of secret properties redacted, line by line. It
/// reads lines, not YAML: a document the parser could not read must be
/// redacted too. A key is a run of letters, digits, `.`, `_` and `-` (after
/// an optional closing quote) before a `:` ending the line or followed by a
/// space; the first secret one on a line (see [`is_secret_property`]),
/// flow mappings included, has the rest of its line redacted, and the lines
/// after it that are more indented than its own line are blanked.
fn redact_source(yaml: &str) -> RedactedSource {
    let mut text = String::with_capacity(yaml.len());
    let mut values = Vec::new();
    // The indentation of the last line holding a secret key, while the
    // lines after it are more indented (its value may go on over them).
    let mut secret_indent: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let ending = &line[content.len()..];
        let indent = content.len() - content.trim_start_matches(' ').len();
        if let Some(secret_indent_now) = secret_indent {
            let trimmed = content.trim();
            if trimmed.is_empty() || indent > secret_indent_now {
                if !trimmed.is_empty() {
                    values.push(trimmed.to_owned());
                }
                text.push_str(ending);
                continue;
            }
            secret_indent = None;
        }
        match secret_key_colon(content) {
            Some(colon) => {
                values.extend(written_values(&content[colon + 1..]));
                text.push_str(&content[..=colon]);
                text.push_str(" \"");
                text.push_str(REDACTED);
                text.push('"');
                text.push_str(ending);
                secret_indent = Some(indent);
            }
            None => text.push_str(line),
        }
    }
    RedactedSource { text, values }
}

/// The byte index of the `:` after the first secret key on `line`.
fn secret_key_colon(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    line.match_indices(':').map(|(at, _)| at).find(|&at| {
        let ends_key = bytes.get(at + 1).is_none_or(u8::is_ascii_whitespace);
        let before = line[..at].trim_end_matches(['"', '\'']);
        // After the last character that cannot be in a key; its width, not
        // 1, so that a non-ASCII character before the key is stepped over.
        let key_start = before
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map_or(0, |(at, c)| at + c.len_utf8());
        ends_key && is_secret_property(&before[key_start..])
    })
}

/// What may be a secret in the text after a secret key's colon: the text,
/// trimmed, and the same without quotes and without a trailing comment. A
/// block scalar's header (`|`, `>-`) holds nothing.
fn written_values(after_colon: &str) -> Vec<String> {
    let written = after_colon.trim();
    let is_block_header = written.starts_with(['|', '>'])
        && written[1..]
            .chars()
            .all(|c| matches!(c, '-' | '+') || c.is_ascii_digit());
    if written.is_empty() || is_block_header {
        return Vec::new();
    }
    let mut values = vec![written.to_owned()];
    let uncommented = written
        .find(" #")
        .map_or(written, |at| written[..at].trim_end());
    for candidate in [uncommented, written] {
        for quote in ['"', '\''] {
            if let Some(inner) = candidate
                .strip_prefix(quote)
                .map(|inner| inner.strip_suffix(quote).unwrap_or(inner))
            {
                values.push(inner.to_owned());
            }
        }
    }
    values.push(uncommented.to_owned());
    values.retain(|value| !value.is_empty());
    values
}

/// Where values from outside the document come from: the environment and
/// files, or stand-ins in tests.
struct Outside<'a> {
    /// Where the document came from, for errors.
    origin: &'a str,
    /// Reads an environment variable.
    variable: &'a dyn Fn(&str) -> Result<String, VarError>,
    /// Reads a file whole.
    read_file: &'a dyn Fn(&Path) -> std::io::Result<String>,
}

impl Outside<'_> {
    /// Replaces the `${NAME}` references in `config`'s string fields and
    /// `extra` values, and the `extra` properties `<property>_file` by
    /// `<property>` set to their file's contents.
    fn resolve(&self, config: &mut ConsumerConfig) -> Result<(), ConfigError> {
        config.brokers = self.interpolate(&config.brokers, "brokers")?;
        config.group_id = self.interpolate(&config.group_id, "group_id")?;
        if let Some(client_id) = &config.client_id {
            config.client_id = Some(self.interpolate(client_id, "client_id")?);
        }
        let written = std::mem::take(&mut config.extra);
        let mut extra = BTreeMap::new();
        for (key, value) in &written {
            let value = self.interpolate(value, &format!("extra.{key}"))?;
            match key
                .strip_suffix(FILE_SUFFIX)
                .filter(|name| !name.is_empty())
            {
                Some(property) => {
                    if written.contains_key(property) {
                        return Err(ConfigError::ValueAndFile {
                            origin: self.origin.to_owned(),
                            property: property.to_owned(),
                        });
                    }
                    let contents = (self.read_file)(Path::new(&value)).map_err(|error| {
                        ConfigError::ValueFile {
                            origin: self.origin.to_owned(),
                            field: format!("extra.{property}"),
                            path: value.clone(),
                            reason: error.to_string(),
                        }
                    })?;
                    extra.insert(property.to_owned(), without_trailing_newline(contents));
                }
                None => {
                    extra.insert(key.clone(), value);
                }
            }
        }
        config.extra = extra;
        Ok(())
    }

    /// `written` with each `${NAME}` replaced by the variable `NAME` and
    /// each `$${` by `${`. `field` names the value in errors, which never
    /// quote it: it may be a secret.
    fn interpolate(&self, written: &str, field: &str) -> Result<String, ConfigError> {
        let mut resolved = String::with_capacity(written.len());
        let mut rest = written;
        while let Some(dollar) = rest.find('$') {
            resolved.push_str(&rest[..dollar]);
            let from_dollar = &rest[dollar..];
            if let Some(after) = from_dollar.strip_prefix("$${") {
                resolved.push_str("${");
                rest = after;
            } else if let Some(after) = from_dollar.strip_prefix("${") {
                let malformed = || ConfigError::Reference {
                    origin: self.origin.to_owned(),
                    field: field.to_owned(),
                };
                let end = after.find('}').ok_or_else(malformed)?;
                let name = &after[..end];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(malformed());
                }
                let value = (self.variable)(name).map_err(|error| ConfigError::Variable {
                    origin: self.origin.to_owned(),
                    field: field.to_owned(),
                    variable: name.to_owned(),
                    // Not the error's own text: `NotUnicode` shows the value.
                    reason: match error {
                        VarError::NotPresent => "is not set",
                        VarError::NotUnicode(_) => "is not valid UTF-8",
                    }
                    .to_owned(),
                })?;
                resolved.push_str(&value);
                rest = &after[end + 1..];
            } else {
                resolved.push('$');
                rest = &from_dollar[1..];
            }
        }
        resolved.push_str(rest);
        Ok(resolved)
    }
}

/// A secret file's contents without the one newline editors and `echo` end
/// a file with.
fn without_trailing_newline(mut contents: String) -> String {
    if contents.ends_with('\n') {
        contents.pop();
        if contents.ends_with('\r') {
            contents.pop();
        }
    }
    contents
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_after_a_non_ascii_character_does_not_panic() {
        // Stepping back one byte from `ß` used to slice inside it.
        assert_eq!(super::secret_key_colon("  # Grüße: x"), None);
        assert_eq!(super::secret_key_colon("    clé: v"), None);
        assert!(super::secret_key_colon("  ü sasl.password: x").is_some());
    }

    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    const SECRET: &str = "s3cr3t-Zq81-never-print";

    const HEAD: &str = "consumer:\n  brokers: b:9092\n  group_id: g\n";

    /// Parses `yaml` as [`parse`] does, with `variables` as the environment
    /// and `files` as the file system.
    fn parse_with(
        yaml: &str,
        variables: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<ConsumerConfig, ConfigError> {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let files: HashMap<String, String> = files
            .iter()
            .map(|(path, contents)| ((*path).to_owned(), (*contents).to_owned()))
            .collect();
        let variable = |name: &str| match name {
            "NOT_UTF8" => Err(VarError::NotUnicode(OsString::from(SECRET))),
            _ => variables.get(name).cloned().ok_or(VarError::NotPresent),
        };
        let read_file = |path: &Path| {
            files
                .get(&path.display().to_string())
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let document: Document =
            serde_saphyr::from_str(yaml).map_err(|error| ConfigError::Yaml {
                origin: "<test>".to_owned(),
                message: error.to_string(),
                line: None,
            })?;
        let mut config = document.consumer;
        Outside {
            origin: "<test>",
            variable: &variable,
            read_file: &read_file,
        }
        .resolve(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    fn assert_hides_secret(error: &ConfigError) {
        for shown in [
            error.to_string(),
            format!("{error:?}"),
            format!("{error:#?}"),
        ] {
            assert!(!shown.contains(SECRET), "the secret leaks: {shown}");
            assert!(
                !shown.contains("s3cr3t"),
                "part of the secret leaks: {shown}"
            );
        }
    }

    #[test]
    fn a_whole_value_and_a_part_come_from_the_environment() {
        let yaml = format!(
            "{HEAD}  client_id: \"${{APP}}-1\"\n  extra:\n    sasl.password: ${{KAFKA_PASSWORD}}\n    \
             sasl.username: \"user-${{APP}}-$${{literal}}\"\n    sasl.mechanisms: PLAIN\n"
        );
        let config = parse_with(
            &yaml,
            &[("KAFKA_PASSWORD", SECRET), ("APP", "billing")],
            &[],
        )
        .expect("variables are set");
        assert_eq!(config.extra["sasl.password"], SECRET);
        assert_eq!(config.extra["sasl.username"], "user-billing-${literal}");
        assert_eq!(config.extra["sasl.mechanisms"], "PLAIN");
        assert_eq!(config.client_id.as_deref(), Some("billing-1"));
    }

    #[test]
    fn a_variables_value_is_not_read_for_references() {
        let yaml = format!("{HEAD}  extra:\n    sasl.password: ${{PASSWORD}}\n");
        let config =
            parse_with(&yaml, &[("PASSWORD", "a${B}c$${d")], &[]).expect("variable is set");
        assert_eq!(config.extra["sasl.password"], "a${B}c$${d");
    }

    #[test]
    fn brokers_and_group_come_from_the_environment() {
        let yaml = "consumer:\n  brokers: \"${HOST}:9092\"\n  group_id: ${GROUP}\n";
        let config =
            parse_with(yaml, &[("HOST", "kafka-1"), ("GROUP", "billing")], &[]).expect("set");
        assert_eq!(config.brokers, "kafka-1:9092");
        assert_eq!(config.group_id, "billing");
    }

    #[test]
    fn a_missing_variable_names_the_field_and_the_variable() {
        let yaml = format!("{HEAD}  extra:\n    sasl.password: \"x${{KAFKA_PASSWORD}}\"\n");
        let error = parse_with(&yaml, &[], &[]).expect_err("variable is not set");
        assert_eq!(
            error,
            ConfigError::Variable {
                origin: "<test>".to_owned(),
                field: "extra.sasl.password".to_owned(),
                variable: "KAFKA_PASSWORD".to_owned(),
                reason: "is not set".to_owned(),
            }
        );
        assert_eq!(
            error.to_string(),
            "<test>: `extra.sasl.password` refers to environment variable `KAFKA_PASSWORD`, \
             which is not set"
        );
    }

    #[test]
    fn a_variable_that_is_not_utf8_is_named_without_its_value() {
        let yaml = format!("{HEAD}  extra:\n    sasl.password: ${{NOT_UTF8}}\n");
        let error = parse_with(&yaml, &[], &[]).expect_err("not UTF-8");
        assert!(
            error
                .to_string()
                .contains("`NOT_UTF8`, which is not valid UTF-8")
        );
        assert_hides_secret(&error);
    }

    #[test]
    fn a_malformed_reference_is_named_without_the_value() {
        for written in ["s3cr3t${", "s3cr3t${}", "s3cr3t${A-B}x", "${s3cr3t"] {
            let yaml = format!("{HEAD}  extra:\n    sasl.password: \"{written}\"\n");
            let error = parse_with(&yaml, &[], &[]).expect_err("malformed");
            assert!(
                matches!(&error, ConfigError::Reference { field, .. } if field == "extra.sasl.password"),
                "{written}: {error:?}"
            );
            assert_hides_secret(&error);
        }
        // A `$` that starts no reference is kept.
        let yaml = format!("{HEAD}  extra:\n    sasl.password: \"a$b$\"\n");
        let config = parse_with(&yaml, &[], &[]).expect("no reference");
        assert_eq!(config.extra["sasl.password"], "a$b$");
    }

    #[test]
    fn a_file_property_sets_the_property_without_one_trailing_newline() {
        let yaml = format!(
            "{HEAD}  extra:\n    sasl.password_file: /run/secrets/kafka\n    \
             ssl.key.pem_file: ${{SECRETS}}/key.pem\n    ssl.key.password_file: /crlf\n"
        );
        let config = parse_with(
            &yaml,
            &[("SECRETS", "/etc/kafka")],
            &[
                ("/run/secrets/kafka", &format!("{SECRET}\n")),
                (
                    "/etc/kafka/key.pem",
                    "-----BEGIN-----\nkey\n-----END-----\n\n",
                ),
                ("/crlf", "pass\r\n"),
            ],
        )
        .expect("files exist");
        assert_eq!(config.extra["sasl.password"], SECRET);
        // Only one newline goes: the blank line before it is the file's.
        assert_eq!(
            config.extra["ssl.key.pem"],
            "-----BEGIN-----\nkey\n-----END-----\n"
        );
        assert_eq!(config.extra["ssl.key.password"], "pass");
        assert!(!config.extra.keys().any(|key| key.ends_with("_file")));
    }

    #[test]
    fn a_file_that_cannot_be_read_names_the_property_and_the_path() {
        let yaml = format!("{HEAD}  extra:\n    sasl.password_file: /run/secrets/missing\n");
        let error = parse_with(&yaml, &[], &[]).expect_err("no such file");
        let ConfigError::ValueFile { field, path, .. } = &error else {
            panic!("expected ValueFile, got {error:?}");
        };
        assert_eq!(field, "extra.sasl.password");
        assert_eq!(path, "/run/secrets/missing");
        assert!(
            error.to_string().contains(
                "`extra.sasl.password` is read from file /run/secrets/missing, which cannot be read"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_property_given_inline_and_as_a_file_is_refused() {
        let yaml = format!(
            "{HEAD}  extra:\n    sasl.password: {SECRET}\n    sasl.password_file: /run/secrets/kafka\n"
        );
        let error = parse_with(&yaml, &[], &[("/run/secrets/kafka", "x")]).expect_err("both");
        assert!(
            matches!(&error, ConfigError::ValueAndFile { property, .. } if property == "sasl.password"),
            "{error:?}"
        );
        assert_hides_secret(&error);
    }

    #[test]
    fn a_real_file_is_read() {
        let path = std::env::temp_dir().join(format!(
            "consumer-api-secret-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, format!("{SECRET}\n")).expect("temp dir is writable");
        let yaml = format!(
            "{HEAD}  extra:\n    sasl.password_file: \"{}\"\n",
            path.display()
        );
        let loaded = ConsumerConfig::from_yaml_str(&yaml);
        std::fs::remove_file(&path).expect("temp file is removable");
        assert_eq!(loaded.expect("file exists").extra["sasl.password"], SECRET);
    }

    /// Documents with a problem near, or in, a secret value: the message
    /// names the problem and its line, and never the secret.
    #[test]
    fn yaml_errors_never_quote_a_secret() {
        let cases: &[(&str, &str, u64)] = &[
            // A misspelt field, the secret in the lines the parser quotes.
            (
                "consumer:\n  brokers: b:9092\n  group_idd: g\n  extra:\n    sasl.password: SECRET\n",
                "group_idd",
                3,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: \"SECRET\" # the password\n  session_timeout_ms: \"ten seconds\"\n",
                "ten seconds",
                6,
            ),
            // A PEM key as a block scalar, then a bad field.
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    ssl.key.pem: |\n      -----BEGIN PRIVATE KEY-----\n      SECRET\n      -----END PRIVATE KEY-----\n    sasl.password: 'SECRET'\n  fetch_min_bytes: lots\n",
                "lots",
                10,
            ),
            // The secret's own value is what is wrong.
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: [SECRET]\n",
                "line 5",
                5,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: \"SECRET\n",
                "line 5",
                5,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra: {sasl.password: SECRET, x: [}\n",
                "line 4",
                4,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: SECRET\n    sasl.password: SECRET\n",
                "sasl.password",
                6,
            ),
            // Forms the line-wise redaction does not see (found by review):
            // a space before the colon, flow style, an explicit key.
            (
                "consumer:\n  brokers: b:9092\n  group_idd: g\n  extra:\n    sasl.password : SECRET\n",
                "line 3",
                3,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_idd: g\n  extra: {\"sasl.password\": \"SECRET\"}\n",
                "line 3",
                3,
            ),
            (
                "consumer:\n  brokers: b:9092\n  group_idd: g\n  extra:\n    ? sasl.password\n    : SECRET\n",
                "line 3",
                3,
            ),
            // A name ending in `secret` is a secret too.
            (
                "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    my.client.secret: SECRET\n  group_idd: g\n",
                "group_idd",
                6,
            ),
        ];
        for (yaml, mentioned, line) in cases {
            let yaml = yaml.replace("SECRET", SECRET);
            let error = ConsumerConfig::from_yaml_str(&yaml).expect_err("a bad document");
            assert_hides_secret(&error);
            let ConfigError::Yaml { line: at, .. } = &error else {
                panic!("expected a YAML error, got {error:?}");
            };
            assert_eq!(*at, Some(*line), "{error}");
            assert!(error.to_string().contains(mentioned), "{error}");
        }
    }

    #[test]
    fn yaml_errors_keep_quoting_the_lines_around_the_problem() {
        let yaml = format!(
            "consumer:\n  brokers: b:9092\n  group_id: g\n  extra:\n    sasl.password: {SECRET}\n  \
             session_timeout_ms: \"ten seconds\"\n"
        );
        let error = ConsumerConfig::from_yaml_str(&yaml).expect_err("a wrong type");
        let shown = error.to_string();
        assert!(
            shown.contains("sasl.password: \"[redacted]\""),
            "the secret's line is quoted redacted: {shown}"
        );
        assert!(
            shown.contains("session_timeout_ms: \"ten seconds\""),
            "{shown}"
        );
    }

    #[test]
    fn the_redacted_source_keeps_its_lines() {
        let yaml = "a:\n  sasl.password: x # c\n  ssl.key.pem: |\n    k1\n\n    k2\n  b: 1\r\n\"ssl.key.password\": 'y'\n";
        let redacted = redact_source(yaml);
        assert_eq!(
            redacted.text,
            "a:\n  sasl.password: \"[redacted]\"\n  ssl.key.pem: \"[redacted]\"\n\n\n\n  b: 1\r\n\"ssl.key.password\": \"[redacted]\"\n"
        );
        for value in ["x", "x # c", "k1", "k2", "y", "'y'"] {
            assert!(
                redacted.values.iter().any(|found| found == value),
                "{value} in {:?}",
                redacted.values
            );
        }
        assert!(!redacted.values.iter().any(|found| found == "|"));
        // Non-secret keys, and secrets' `_file` paths, are kept.
        let plain = "brokers: b:9092\nextra: {sasl.password_file: /p, check.crcs: true}\n";
        assert_eq!(redact_source(plain).text, plain);
    }
}
