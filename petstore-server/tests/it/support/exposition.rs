//! Reading `/metrics`: a parser of the Prometheus text exposition format and the
//! scrape helpers the metrics tests share.

use std::collections::BTreeMap;

use super::within;

/// One sample of the exposition: its labels and value.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses the Prometheus text exposition format: `name{label="value",...} value`
/// lines; `#` lines are comments (`HELP`, `TYPE`).
pub(crate) fn parse(text: &str) -> BTreeMap<String, Vec<Sample>> {
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("a sample without a value: {line}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let end = loop {
                let (i, c) = chars.next().expect("a closed label set");
                match c {
                    '}' => break i,
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("a closed label value").1 {
                                '\\' => match chars.next().expect("an escape").1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                '"' => break,
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            };
            rest = &body[end + 1..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .expect("a value")
            .parse()
            .unwrap_or_else(|e| panic!("not a number ({e}): {line}"));
        samples
            .entry(name.to_owned())
            .or_default()
            .push(Sample { labels, value });
    }
    samples
}

pub(crate) struct Scrape(pub(crate) BTreeMap<String, Vec<Sample>>);

impl Scrape {
    /// The value of the one sample of `name` whose labels include `labels`; 0 when
    /// there is none (a counter never incremented is not exported).
    /// Waits are bounded by [`super::WAIT`].
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&Sample> = self
            .0
            .get(name)
            .into_iter()
            .flatten()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {matching:?}"
        );
        matching.first().map_or(0.0, |s| s.value)
    }
}

pub(crate) async fn scrape(base: &str) -> Scrape {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape(parse(&response.text().await.unwrap()))
}

/// Scrapes until `check` holds, at most [`WAIT`].
pub(crate) async fn scrape_until(
    base: &str,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> Scrape {
    within(what, async {
        loop {
            let s = scrape(base).await;
            if check(&s) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}
