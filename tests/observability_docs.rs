//! The observability guide (`docs/observability.md`) and the Grafana
//! dashboard (`docs/grafana/tiered-kafka-consumer.json`) agree with each
//! other: every metric a panel queries is in the guide's metric table, every
//! metric of the table has a panel, the labels a query uses are the metric's,
//! the guide shows each panel's queries verbatim, and the guide's
//! configuration YAML loads. No broker: this runs in every phase.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tiered_kafka::prelude::ConsumerConfig;

const GUIDE: &str = "docs/observability.md";
const DASHBOARD: &str = "docs/grafana/tiered-kafka-consumer.json";
const PREFIX: &str = "kafka_consumer_";
/// The labels every metric carries (the guide's first table).
const COMMON_LABELS: [&str; 3] = ["group", "client", "tier"];
/// Labels a Prometheus scrape adds to every series.
const TARGET_LABELS: [&str; 4] = ["instance", "job", "pod", "namespace"];

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|error| panic!("{DASHBOARD}: {error}"))
}

/// One row of the guide's metric table.
#[derive(Debug)]
struct Row {
    kind: String,
    /// The row's own labels, with the common ones.
    labels: BTreeSet<String>,
}

/// The guide's section `heading` (a `## ` heading), up to the next one.
fn section<'a>(document: &'a str, heading: &str) -> &'a str {
    let start = document
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("{GUIDE} has no section {heading:?}"));
    let rest = &document[start + heading.len() + 2..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The metric table of the guide's `## Metrics` section: the rows whose
/// first cell is a backquoted `kafka_consumer_*` name.
fn metric_table() -> BTreeMap<String, Row> {
    let guide = read(GUIDE);
    let mut table = BTreeMap::new();
    for line in section(&guide, "## Metrics").lines() {
        let Some(rest) = line.strip_prefix("| `kafka_consumer_") else {
            continue;
        };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", name, type, labels, meaning, updates, ""
        assert_eq!(cells.len(), 7, "{GUIDE}: a metric row with 5 cells: {line}");
        let name = format!(
            "{PREFIX}{}",
            &rest[..rest.find('`').expect("a closing backquote")]
        );
        let kind = cells[2].to_owned();
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "{GUIDE}: {name} has type {kind:?}"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{GUIDE}: {name}: counters and only counters end in _total"
        );
        assert!(
            !cells[4].is_empty() && !cells[5].is_empty(),
            "{GUIDE}: {name} needs a meaning and when it updates"
        );
        // The labels cell: "`topic`, `part` (`key`, `value`, `header_key`)":
        // the backquoted words outside parentheses.
        let mut labels: BTreeSet<String> = COMMON_LABELS.iter().map(|&l| l.to_owned()).collect();
        let mut depth = 0_i32;
        for (index, piece) in cells[3].split('`').enumerate() {
            if index % 2 == 1 && depth == 0 {
                labels.insert(piece.to_owned());
            } else if index % 2 == 0 {
                depth += piece.matches('(').count() as i32;
                depth -= piece.matches(')').count() as i32;
            }
        }
        let previous = table.insert(name.clone(), Row { kind, labels });
        assert!(previous.is_none(), "{GUIDE}: {name} is listed twice");
    }
    assert!(
        !table.is_empty(),
        "{GUIDE}: no metric table found under ## Metrics"
    );
    table
}

/// The metric name of a series name: without `_bucket`, `_sum`, `_count`.
fn metric_of(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// Every `kafka_consumer_*` series name in `text`, with its byte offset.
fn series_names(text: &str) -> Vec<(usize, &str)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(PREFIX) {
        let start = from + found;
        let end = text[start..]
            .find(|c: char| !is_name(c))
            .map_or(text.len(), |length| start + length);
        let preceded_by_name = text[..start].chars().next_back().is_some_and(is_name);
        if !preceded_by_name {
            names.push((start, &text[start..end]));
        }
        from = end;
    }
    names
}

/// Every panel, those inside (collapsed) rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every query expression of a panel target, with its panel's title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    queries
}

#[test]
fn every_metric_the_dashboard_queries_is_in_the_guides_table() {
    let table = metric_table();
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);
    assert!(!queries.is_empty(), "{DASHBOARD}: no panel queries");
    for (title, expr) in &queries {
        let names = series_names(expr);
        assert!(
            !names.is_empty(),
            "panel {title:?} queries no {PREFIX}* metric: {expr}"
        );
        for (_, series) in names {
            assert!(
                table.contains_key(metric_of(series)),
                "panel {title:?} queries {series}, which {GUIDE}'s metric table does not list"
            );
        }
    }
    // The template variables' queries, and anything else in the file.
    let text = read(DASHBOARD);
    for (_, series) in series_names(&text) {
        assert!(
            table.contains_key(metric_of(series)),
            "{DASHBOARD} names {series}, which {GUIDE}'s metric table does not list"
        );
    }
}

#[test]
fn every_metric_of_the_guides_table_has_a_panel() {
    let table = metric_table();
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);
    let used: BTreeSet<&str> = queries
        .iter()
        .flat_map(|(_, expr)| series_names(expr).into_iter().map(|(_, s)| metric_of(s)))
        .collect();
    let missing: Vec<&String> = table
        .keys()
        .filter(|name| !used.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "no panel of {DASHBOARD} shows {missing:?}"
    );
    // A histogram is queried through its buckets, so that
    // histogram_quantile works.
    for (name, row) in &table {
        if row.kind == "histogram" {
            let bucket = format!("{name}_bucket");
            assert!(
                queries
                    .iter()
                    .any(|(_, expr)| expr.contains(&bucket) && expr.contains("histogram_quantile")),
                "no panel takes histogram_quantile over {bucket}"
            );
        }
    }
}

/// The labels a query selects on (`{label=~"..."}`) or aggregates by
/// (`by (label, ...)`) are labels of the metric it queries.
#[test]
fn the_dashboards_queries_use_only_the_metrics_labels() {
    let table = metric_table();
    let dashboard = dashboard();
    for (title, expr) in panel_queries(&dashboard) {
        // A metric missing from the table is the first test's failure.
        let names: Vec<(usize, &str)> = series_names(&expr)
            .into_iter()
            .filter(|(_, series)| table.contains_key(metric_of(series)))
            .collect();
        let labels_of = |series: &str| -> BTreeSet<String> {
            let mut labels = table[metric_of(series)].labels.clone();
            labels.extend(TARGET_LABELS.iter().map(|&l| l.to_owned()));
            if series.ends_with("_bucket") {
                labels.insert("le".to_owned());
            }
            if table[metric_of(series)].kind == "histogram" && series == metric_of(series) {
                labels.insert("quantile".to_owned()); // the summary form
            }
            labels
        };
        // Selectors: the `{...}` right after a metric name.
        for (start, series) in &names {
            let after = &expr[start + series.len()..];
            let Some(selector) = after.strip_prefix('{') else {
                continue;
            };
            let selector = &selector[..selector.find('}').expect("a closed selector")];
            for matcher in selector.split(',') {
                let label = matcher.split(['=', '!']).next().expect("a label").trim();
                assert!(
                    labels_of(series).contains(label),
                    "panel {title:?}: {series} has no label {label:?}: {expr}"
                );
            }
        }
        // `by (...)`: checked against the next metric the expression names.
        let mut from = 0;
        while let Some(found) = expr[from..].find("by (") {
            let open = from + found + "by (".len();
            let close = open + expr[open..].find(')').expect("a closed by clause");
            let Some(series) = names
                .iter()
                .find(|(start, _)| *start > close)
                .map(|(_, series)| *series)
            else {
                break;
            };
            for label in expr[open..close].split(',').map(str::trim) {
                assert!(
                    labels_of(series).contains(label),
                    "panel {title:?}: aggregates {series} by {label:?}, which it does not have: {expr}"
                );
            }
            from = close;
        }
    }
}

/// The guide describes each panel under a heading of its title, and shows
/// its queries verbatim.
#[test]
fn the_guide_shows_every_panel_and_its_queries() {
    let guide = read(GUIDE);
    let dashboard_section = section(&guide, "## The dashboard");
    for panel in panels(&dashboard()) {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("a panel title");
        let heading = format!("\n### {title}\n");
        let start = dashboard_section
            .find(&heading)
            .unwrap_or_else(|| panic!("{GUIDE}'s dashboard section has no heading {heading:?}"));
        let text = &dashboard_section[start + heading.len()..];
        let text = &text[..text.find("\n### ").unwrap_or(text.len())];
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                text.lines().any(|line| line == expr),
                "{GUIDE}, ### {title}: does not show the panel's query\n{expr}"
            );
        }
        assert!(
            text.contains("Healthy") && text.contains("Unhealthy"),
            "{GUIDE}, ### {title}: say what healthy and unhealthy look like"
        );
    }
}

/// Every metric name the guide mentions anywhere (the alert rules, the
/// prose) is one of its table.
#[test]
fn the_guide_names_only_metrics_of_its_table() {
    let table = metric_table();
    let guide = read(GUIDE);
    for (_, series) in series_names(&guide) {
        assert!(
            table.contains_key(metric_of(series)),
            "{GUIDE} mentions {series}, which its metric table does not list"
        );
    }
}

/// The dashboard imports: unique panel ids, panels laid out on the 24-column
/// grid without overlapping, every query on the `datasource` variable, the
/// `group` and `topic` variables from label values.
#[test]
fn the_dashboard_is_importable() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"]
            .as_u64()
            .is_some_and(|version| version >= 36)
    );
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    assert!(
        dashboard["title"]
            .as_str()
            .is_some_and(|title| !title.is_empty())
    );

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|variable| variable["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for name in ["group", "topic"] {
        let variable = variable(name);
        assert_eq!(variable["type"], "query", "{name}");
        assert_eq!(variable["datasource"]["uid"], "${datasource}", "{name}");
        let query = variable["query"]["query"].as_str().expect("a query");
        assert!(
            query.starts_with("label_values(") && query.ends_with(&format!(", {name})")),
            "{name}: {query}"
        );
    }

    let panels = panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut areas: Vec<(String, [u64; 4])> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("a title").to_owned();
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title:?}: no id"));
        assert!(ids.insert(id), "panel id {id} used twice ({title:?})");
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|key| {
            grid[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{title:?}: gridPos.{key}"))
        });
        assert!(w > 0 && h > 0 && x + w <= 24, "{title:?}: gridPos {grid}");
        for (other, [ox, oy, ow, oh]) in &areas {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {title:?} and {other:?} overlap");
        }
        areas.push((title.clone(), [x, y, w, h]));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title:?}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title:?}: no query");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title:?}");
            let ref_id = target["refId"].as_str().expect("refId");
            assert!(ref_ids.insert(ref_id), "{title:?}: refId {ref_id} twice");
        }
    }
}

/// The guide's configuration YAML (the blocks with a `brokers:` key) loads
/// as a `ConsumerConfig`, with metrics on.
#[test]
fn the_guides_configuration_yaml_loads_with_metrics_on() {
    let guide = read(GUIDE);
    let blocks: Vec<&str> = guide
        .split("```yaml\n")
        .skip(1)
        .map(|rest| &rest[..rest.find("```").expect("a closed block")])
        .filter(|block| {
            block
                .lines()
                .any(|line| line.trim_start().starts_with("brokers:"))
        })
        .collect();
    assert!(!blocks.is_empty(), "{GUIDE} shows no configuration YAML");
    for block in blocks {
        let config = ConsumerConfig::from_yaml_str(block)
            .unwrap_or_else(|error| panic!("{GUIDE}: {error}\n{block}"));
        // Through serde, so that this file compiles whatever the field's type.
        let config = serde_json::to_value(&config).expect("serialize");
        assert!(
            config["metrics"].is_object(),
            "{GUIDE}: this block does not turn metrics on\n{block}"
        );
        assert_ne!(config["metrics"]["enabled"], false, "{block}");
    }
}

/// The helpers themselves, on small inputs.
#[test]
fn the_checks_find_what_they_should() {
    let expr = r#"sum by (group, le) (rate(kafka_consumer_x_seconds_bucket{group=~"$g"}[5m])) / kafka_consumer_y_total"#;
    let names: Vec<&str> = series_names(expr).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        names,
        ["kafka_consumer_x_seconds_bucket", "kafka_consumer_y_total"]
    );
    assert_eq!(metric_of(names[0]), "kafka_consumer_x_seconds");
    assert_eq!(metric_of(names[1]), "kafka_consumer_y_total");
    assert!(series_names("my_kafka_consumer_lag").is_empty());
}
