//! Protections checked before an operation runs: nesting depth, complexity and the
//! introspection switch. Juniper has no complexity limit, and its own depth limit
//! (parse errors without a code) guards the stack rather than the service, so the
//! operation is measured here first.

use std::collections::{HashMap, HashSet};

use graphql_parser::query::{
    Definition, Document, Field, OperationDefinition, Selection, SelectionSet, Value,
};

use crate::config::GraphQlConfig;
use crate::schema::{DEFAULT_EVENTS, DEFAULT_PAGE};

/// Deepest bracket nesting (`{`, `[`, `(` together) given to the parser at all: the parser
/// is recursive, so absurd nesting is refused by a flat scan before it can exhaust the
/// stack.
const MAX_NESTING: usize = 64;
/// Deepest chain of fragment spreads followed while measuring.
const MAX_SPREAD_CHAIN: usize = 64;
/// Largest per-item multiplier a `first` argument adds (the core caps pages anyway).
const MAX_MULTIPLIER: usize = 1_000;

/// The kind of the operation a request selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// Why an operation was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    /// `extensions.code`.
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Rejection {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The limits of one router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    max_depth: usize,
    max_complexity: usize,
    introspection: bool,
    introspection_max_depth: usize,
    introspection_max_complexity: usize,
}

impl Limits {
    pub(crate) fn new(config: &GraphQlConfig) -> Self {
        Self {
            max_depth: config.max_depth,
            max_complexity: config.max_complexity,
            introspection: config.introspection,
            introspection_max_depth: config.introspection_max_depth,
            introspection_max_complexity: config.introspection_max_complexity,
        }
    }

    /// Measures the operation `operation_name` selects in `query`. `variable` gives
    /// the integer value of a request variable (for `first: $n`).
    ///
    /// Returns the operation's kind, or `None` when no operation can be selected (juniper
    /// then reports the precise error).
    pub(crate) fn check(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variable: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<Option<OperationKind>, Rejection> {
        if nesting(query) > MAX_NESTING {
            return Err(too_deep(self.max_depth));
        }
        let document: Document<'_, &str> = graphql_parser::parse_query(query)
            .map_err(|e| Rejection::new("GRAPHQL_PARSE_FAILED", syntax_error(&e.to_string())))?;
        let Some((kind, operation)) = select(&document, operation_name) else {
            return Ok(None);
        };
        let defaults: HashMap<&str, i64> = variable_defaults(operation);
        let lookup = |name: &str| variable(name).or_else(|| defaults.get(name).copied());
        let mut walker = Walker {
            fragments: document
                .definitions
                .iter()
                .filter_map(|d| match d {
                    Definition::Fragment(f) => Some((f.name, &f.selection_set)),
                    Definition::Operation(_) => None,
                })
                .collect(),
            memo: HashMap::new(),
            open: HashSet::new(),
            variable: &lookup,
            paged_lists: kind == OperationKind::Query,
            introspection: None,
        };
        let cost = walker.selection_set(selection_set(operation), true, 0)?;
        if let Some(introspection) = walker.introspection {
            if !self.introspection {
                return Err(Rejection::new(
                    "INTROSPECTION_DISABLED",
                    "GraphQL introspection (`__schema`, `__type`) is disabled on this server",
                ));
            }
            if introspection.depth > self.introspection_max_depth {
                return Err(Rejection::new(
                    "QUERY_TOO_DEEP",
                    format!(
                        "the introspection nests deeper than the maximum depth of {}",
                        self.introspection_max_depth
                    ),
                ));
            }
            if introspection.complexity > self.introspection_max_complexity {
                return Err(Rejection::new(
                    "QUERY_TOO_COMPLEX",
                    format!(
                        "the introspection's complexity is {}, more than the maximum of {}",
                        introspection.complexity, self.introspection_max_complexity
                    ),
                ));
            }
        }
        if cost.depth > self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        if cost.complexity > self.max_complexity {
            return Err(Rejection::new(
                "QUERY_TOO_COMPLEX",
                format!(
                    "the operation's complexity is {}, more than the maximum of {}",
                    cost.complexity, self.max_complexity
                ),
            ));
        }
        Ok(Some(kind))
    }
}

/// graphql-parser's error text (`query parse error: Parse error at 1:5\nUnexpected
/// end of input\nExpected }\n`) said once: `syntax error at 1:5: Unexpected end of
/// input; Expected }`.
fn syntax_error(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("query parse error: ").unwrap_or(text);
    let (position, what) = match text.strip_prefix("Parse error at ") {
        Some(rest) => rest.split_once('\n').unwrap_or((rest, "")),
        None => ("", text),
    };
    let what = what
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match (position, what.is_empty()) {
        ("", _) => format!("syntax error: {what}"),
        (at, true) => format!("syntax error at {at}"),
        (at, false) => format!("syntax error at {at}: {what}"),
    }
}

fn too_deep(max: usize) -> Rejection {
    Rejection::new(
        "QUERY_TOO_DEEP",
        format!("the operation nests deeper than the maximum depth of {max}"),
    )
}

/// The deepest nesting of `{`, `[` and `(` outside strings and comments.
fn nesting(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped triple quote inside a block string.
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

type Operation<'d, 'a> = &'d OperationDefinition<'a, &'a str>;

/// The operation a request runs, as GraphQL selects it.
fn select<'d, 'a>(
    document: &'d Document<'a, &'a str>,
    name: Option<&str>,
) -> Option<(OperationKind, Operation<'d, 'a>)> {
    let mut operations = document.definitions.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    let operation = match name {
        Some(name) => operations.find(|op| operation_name(op) == Some(name))?,
        None => {
            let first = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            first
        }
    };
    let kind = match operation {
        OperationDefinition::SelectionSet(_) | OperationDefinition::Query(_) => {
            OperationKind::Query
        }
        OperationDefinition::Mutation(_) => OperationKind::Mutation,
        OperationDefinition::Subscription(_) => OperationKind::Subscription,
    };
    Some((kind, operation))
}

fn operation_name<'a>(op: &OperationDefinition<'a, &'a str>) -> Option<&'a str> {
    match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name,
        OperationDefinition::Mutation(m) => m.name,
        OperationDefinition::Subscription(s) => s.name,
    }
}

fn selection_set<'d, 'a>(op: Operation<'d, 'a>) -> &'d SelectionSet<'a, &'a str> {
    match op {
        OperationDefinition::SelectionSet(s) => s,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    }
}

fn variable_defaults<'a>(op: Operation<'_, 'a>) -> HashMap<&'a str, i64> {
    let definitions = match op {
        OperationDefinition::SelectionSet(_) => return HashMap::new(),
        OperationDefinition::Query(q) => &q.variable_definitions,
        OperationDefinition::Mutation(m) => &m.variable_definitions,
        OperationDefinition::Subscription(s) => &s.variable_definitions,
    };
    definitions
        .iter()
        .filter_map(|d| match &d.default_value {
            Some(Value::Int(n)) => Some((d.name, n.as_i64()?)),
            _ => None,
        })
        .collect()
}

/// Depth and complexity of a part of an operation.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    depth: usize,
    complexity: usize,
}

struct Walker<'d, 'a, 'v> {
    fragments: HashMap<&'a str, &'d SelectionSet<'a, &'a str>>,
    /// Costs of fragments already measured (and whether spread among the root
    /// fields): a fragment spread many times is measured once, so fragment "bombs" cost
    /// linear time.
    memo: HashMap<(&'a str, bool), Cost>,
    /// Fragments on the current path (a cycle is a validation error juniper reports).
    open: HashSet<&'a str>,
    variable: &'v dyn Fn(&str) -> Option<i64>,
    /// Whether root list fields without `first` count as a default page (queries
    /// only; subscription fields yield one item at a time).
    paged_lists: bool,
    /// The cost of the introspection fields, when there are any: the deepest, and all of
    /// them together.
    introspection: Option<Cost>,
}

impl<'d, 'a> Walker<'d, 'a, '_> {
    /// Measures a selection set; `root` when it selects root fields.
    fn selection_set(
        &mut self,
        set: &'d SelectionSet<'a, &'a str>,
        root: bool,
        chain: usize,
    ) -> Result<Cost, Rejection> {
        let mut total = Cost::default();
        for item in &set.items {
            let cost = match item {
                Selection::Field(field) => self.field(field, root, chain)?,
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.selection_set, root, chain)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.fragment_name, root, chain + 1)?
                }
            };
            total.depth = total.depth.max(cost.depth);
            total.complexity = total.complexity.saturating_add(cost.complexity);
        }
        Ok(total)
    }

    fn field(
        &mut self,
        field: &'d Field<'a, &'a str>,
        root: bool,
        chain: usize,
    ) -> Result<Cost, Rejection> {
        if matches!(field.name, "__schema" | "__type") {
            // Introspection is served from the schema in memory, under limits of its own
            // (the standard introspection query is deeper than data queries need to be):
            // it counts as one field here.
            let inner = self.selection_set(&field.selection_set, false, chain)?;
            let total = self.introspection.get_or_insert_with(Cost::default);
            total.depth = total.depth.max(inner.depth.saturating_add(1));
            total.complexity = total
                .complexity
                .saturating_add(inner.complexity.saturating_add(1));
            return Ok(Cost {
                depth: 1,
                complexity: 1,
            });
        }
        if field.selection_set.items.is_empty() {
            return Ok(Cost {
                depth: 1,
                complexity: 1,
            });
        }
        let inner = self.selection_set(&field.selection_set, false, chain)?;
        let items = self.multiplier(field, root);
        Ok(Cost {
            depth: inner.depth.saturating_add(1),
            complexity: inner.complexity.saturating_mul(items).saturating_add(1),
        })
    }

    /// How many items a field returns, at most: its `first` argument, or the default
    /// page of the paged root lists.
    fn multiplier(&self, field: &Field<'a, &'a str>, root: bool) -> usize {
        let first = field.arguments.iter().find(|(name, _)| *name == "first");
        let n = match first.map(|(_, v)| v) {
            Some(Value::Int(n)) => n.as_i64(),
            Some(Value::Variable(name)) => (self.variable)(name),
            _ => None,
        };
        match n {
            Some(n) => usize::try_from(n).unwrap_or(1).clamp(1, MAX_MULTIPLIER),
            None if self.paged_lists && root => match field.name {
                "pets" | "orders" => DEFAULT_PAGE as usize,
                "events" => DEFAULT_EVENTS as usize,
                _ => 1,
            },
            None => 1,
        }
    }

    fn fragment(&mut self, name: &'a str, root: bool, chain: usize) -> Result<Cost, Rejection> {
        if let Some(cost) = self.memo.get(&(name, root)) {
            return Ok(*cost);
        }
        if chain > MAX_SPREAD_CHAIN {
            return Err(Rejection::new(
                "QUERY_TOO_DEEP",
                format!("fragment spreads nest deeper than {MAX_SPREAD_CHAIN}"),
            ));
        }
        let Some(set) = self.fragments.get(name).copied() else {
            return Ok(Cost::default());
        };
        if !self.open.insert(name) {
            return Ok(Cost::default());
        }
        let cost = self.selection_set(set, root, chain)?;
        self.open.remove(name);
        self.memo.insert((name, root), cost);
        Ok(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(depth: usize, complexity: usize) -> Limits {
        Limits::new(
            &GraphQlConfig::default()
                .max_depth(depth)
                .max_complexity(complexity),
        )
    }

    fn no_vars(_: &str) -> Option<i64> {
        None
    }

    #[test]
    fn depth_counts_fields_through_fragments() {
        let q = "query { pets { nodes { ...P } } } fragment P on Pet { price { amount } }";
        assert!(limits(4, 10_000).check(q, None, &no_vars).is_ok());
        let err = limits(3, 10_000).check(q, None, &no_vars).unwrap_err();
        assert_eq!(err.code, "QUERY_TOO_DEEP");
    }

    #[test]
    fn complexity_multiplies_pages() {
        // 1 (pets) + 10 * (1 (nodes) + 2) = 31
        let q = "{ pets(first: 10) { nodes { id name } } }";
        assert!(limits(10, 31).check(q, None, &no_vars).is_ok());
        assert_eq!(
            limits(10, 30).check(q, None, &no_vars).unwrap_err().code,
            "QUERY_TOO_COMPLEX"
        );
        let q = "query($n: Int) { pets(first: $n) { nodes { id name } } }";
        assert!(limits(10, 31).check(q, None, &|_| Some(10)).is_ok());
        assert!(limits(10, 31).check(q, None, &|_| Some(11)).is_err());
    }

    #[test]
    fn default_pages_count_once_at_the_root() {
        // 1 (events) + 100 * (1 (events) + 2 (id, type) + 1 (next)) = 401: the inner
        // `events` list is not multiplied again.
        let q = "{ events { events { id type } next } }";
        assert!(limits(10, 401).check(q, None, &no_vars).is_ok());
        assert!(limits(10, 400).check(q, None, &no_vars).is_err());
        // A subscription yields one event at a time.
        let q = "subscription { events { id type } }";
        assert!(limits(10, 3).check(q, None, &no_vars).is_ok());
    }

    #[test]
    fn fragment_bombs_are_measured_in_linear_time() {
        let mut q = String::from("{ ...F0 }\nfragment F0 on Query { viewer { subject } }\n");
        for i in 1..40 {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
                p = i - 1
            ));
        }
        q = q.replacen("{ ...F0 }", "{ ...F39 }", 1);
        let err = limits(10, 5_000).check(&q, None, &no_vars).unwrap_err();
        assert_eq!(err.code, "QUERY_TOO_COMPLEX");
    }

    #[test]
    fn absurd_nesting_is_refused_before_parsing() {
        let q = format!("{}{}", "{ a ".repeat(100_000), "}".repeat(100_000));
        assert_eq!(
            limits(10, 5_000)
                .check(&q, None, &no_vars)
                .unwrap_err()
                .code,
            "QUERY_TOO_DEEP"
        );
        // Braces inside strings and comments do not count.
        let q = format!(
            "{{ pets(q: \"{}\") {{ nodes {{ id }} }} }} # {}",
            "{".repeat(100),
            "[".repeat(100)
        );
        assert!(limits(10, 5_000).check(&q, None, &no_vars).is_ok());
    }

    /// The introspection query of graphql-js (`getIntrospectionQuery`, with the options
    /// GraphiQL turns on): what GraphiQL sends to draw its docs.
    const STANDARD_INTROSPECTION: &str = r#"
        query IntrospectionQuery {
          __schema {
            description
            queryType { name } mutationType { name } subscriptionType { name }
            types { ...FullType }
            directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
          }
        }
        fragment FullType on __Type {
          kind name description specifiedByURL isOneOf
          fields(includeDeprecated: true) {
            name description args(includeDeprecated: true) { ...InputValue }
            type { ...TypeRef } isDeprecated deprecationReason
          }
          inputFields(includeDeprecated: true) { ...InputValue }
          interfaces { ...TypeRef }
          enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
          possibleTypes { ...TypeRef }
        }
        fragment InputValue on __InputValue {
          name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
        }
        fragment TypeRef on __Type {
          kind name
          ofType { kind name ofType { kind name ofType { kind name ofType { kind name
          ofType { kind name ofType { kind name ofType { kind name ofType { kind name
          ofType { kind name } } } } } } } } }
        }
    "#;

    #[test]
    fn introspection_has_limits_of_its_own() {
        // The standard query passes the defaults, although it is deeper than data
        // queries may be.
        let defaults = Limits::new(&GraphQlConfig::default());
        assert!(
            defaults
                .check(STANDARD_INTROSPECTION, None, &no_vars)
                .is_ok()
        );
        assert_eq!(
            limits(10, 5_000)
                .check("{ pets { nodes { price { amount } } } }", None, &no_vars)
                .map(|k| k.is_some()),
            Ok(true)
        );
        // 40 levels through `ofType` are refused.
        let deep = format!(
            "{{ __schema {{ types {{ {}name{} }} }} }}",
            "ofType { ".repeat(40),
            " }".repeat(40)
        );
        let err = defaults.check(&deep, None, &no_vars).unwrap_err();
        assert_eq!(err.code, "QUERY_TOO_DEEP");
        assert!(err.message.contains("introspection"), "{}", err.message);
        // So is a wide one, and `__type` counts like `__schema`.
        let wide = format!(
            "{{ __type(name: \"Pet\") {{ {} }} }}",
            (0..1_100)
                .map(|i| format!("a{i}: name"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(
            defaults.check(&wide, None, &no_vars).unwrap_err().code,
            "QUERY_TOO_COMPLEX"
        );
        // The limits are the configured ones.
        let tight = Limits::new(&GraphQlConfig::default().introspection_max_depth(14));
        assert_eq!(
            tight
                .check(STANDARD_INTROSPECTION, None, &no_vars)
                .unwrap_err()
                .code,
            "QUERY_TOO_DEEP"
        );
    }

    #[test]
    fn introspection_switch() {
        let q = "{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name ofType { name } } } } } } } } }";
        assert!(limits(3, 100).check(q, None, &no_vars).is_ok());
        let off = Limits::new(&GraphQlConfig::default().introspection(false));
        assert_eq!(
            off.check(q, None, &no_vars).unwrap_err().code,
            "INTROSPECTION_DISABLED"
        );
        assert!(off.check("{ __typename }", None, &no_vars).is_ok());
    }

    #[test]
    fn selects_the_named_operation() {
        let q = "query A { viewer { subject } } mutation B { deletePet(id: \"x\") }";
        let l = limits(10, 100);
        assert_eq!(
            l.check(q, Some("B"), &no_vars).unwrap(),
            Some(OperationKind::Mutation)
        );
        assert_eq!(l.check(q, None, &no_vars).unwrap(), None);
        let err = l.check("{ x ", None, &no_vars).unwrap_err();
        assert_eq!(err.code, "GRAPHQL_PARSE_FAILED");
        // Said once: no "error: ... error".
        assert!(
            err.message.starts_with("syntax error at 1:"),
            "{}",
            err.message
        );
        assert_eq!(err.message.matches("error").count(), 1, "{}", err.message);
    }
}
