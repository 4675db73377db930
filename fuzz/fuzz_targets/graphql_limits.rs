//! The GraphQL limits walker (`petstore_graphql::__check_limits`): what the router
//! measures before juniper runs an operation (a flat nesting scan, then the parser,
//! then depth and complexity through fragments, and the introspection switch).
//!
//! Input: two bytes of limits (depth 1..=32, complexity 1..=4096 in steps of 16), one
//! byte for every integer variable, then the query. Invariants: nothing panics or
//! overflows the stack; refusals carry one of the walker's codes; larger limits never
//! refuse what smaller ones accept, and smaller ones never accept what larger ones
//! refuse for depth or complexity; turning introspection on never refuses what it
//! accepts off; the verdict does not depend on anything but the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petstore_graphql::__check_limits as check;

const CODES: [&str; 4] = [
    "GRAPHQL_PARSE_FAILED",
    "QUERY_TOO_DEEP",
    "QUERY_TOO_COMPLEX",
    "INTROSPECTION_DISABLED",
];

fuzz_target!(|data: &[u8]| {
    let [depth, complexity, variable, rest @ ..] = data else {
        return;
    };
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    let depth = usize::from(depth % 32) + 1;
    let complexity = usize::from(*complexity) * 16 + 1;
    let value = i64::from(*variable);
    let vars = |_: &str| Some(value);

    let verdict = check(query, None, depth, complexity, false, &vars);
    if let Err(code) = verdict {
        assert!(CODES.contains(&code), "unknown code {code}");
    }
    assert_eq!(
        check(query, None, depth, complexity, false, &vars),
        verdict,
        "the same input, another verdict"
    );

    let larger = check(query, None, depth * 2, complexity * 2, false, &vars);
    match (verdict, larger) {
        (Ok(kind), other) => assert_eq!(other, Ok(kind), "larger limits refused {query:?}"),
        (Err(code @ ("GRAPHQL_PARSE_FAILED" | "INTROSPECTION_DISABLED")), other) => {
            assert_eq!(other, Err(code), "{query:?}")
        }
        (Err(_), _) => {}
    }
    if let Err(code @ ("QUERY_TOO_DEEP" | "QUERY_TOO_COMPLEX")) = larger {
        let smaller = check(query, None, depth, complexity, false, &vars);
        assert!(
            smaller.is_err(),
            "smaller limits accepted what larger refused ({code})"
        );
    }

    let open = check(query, None, depth, complexity, true, &vars);
    if let Ok(kind) = verdict {
        assert_eq!(open, Ok(kind), "introspection on refused what off accepts");
    }
    if let Err("INTROSPECTION_DISABLED") = open {
        panic!("introspection is on");
    }
});
