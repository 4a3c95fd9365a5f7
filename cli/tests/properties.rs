//! Properties over generated input: no panic anywhere from text to plan, and
//! formatting is faithful: `parse(fmt(x)) == parse(x)` and `fmt(fmt(x)) == fmt(x)`.

use flow_engine::{Plan, Selection};
use proptest::prelude::*;

/// Pieces that flows are made of, so that generated text reaches deep into the
/// grammar and the compiler instead of failing on the first character.
const TOKENS: &[&str] = &[
    "flow",
    "database",
    "storage",
    "groups",
    "step",
    "env",
    "schedule",
    "check",
    "=",
    "{",
    "}",
    "[",
    "]",
    ",",
    "->",
    "(",
    ")",
    "\"x\"",
    "\"data/csv/*.csv\"",
    "\"embedded\"",
    "\"s3://b/p\"",
    "42",
    "-1.5",
    "10m",
    "true",
    "#c\n",
    "\n",
    " ",
    "\t",
    "env(\"X\", \"embedded\")",
    "a",
    "seed",
    "populate",
    "flow",
    "api",
    "api.public",
    "api.public.t",
    "spaces \"p/\"",
    "group",
    "after",
    "from",
    "to",
    "sql",
    "tables",
    "mode",
    "swap",
    "pg:source:load",
    "pg:flow:configure",
    "pg:model:transform/x",
    "minio:download",
    "sh:run",
    "sql:flow:run",
    "shp:convert",
    "x:y:z:w",
    "\"unterminated",
    "é",
    "\\",
    "/",
    "*",
    "\r\n",
];

fn flowish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|tokens| tokens.join(" "))
}

/// Valid flows: a structure the grammar accepts, with varied values.
fn valid_flow() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("\"data/*.csv\"".to_owned()),
        Just("source".to_owned()),
        Just("api.public".to_owned()),
        Just("spaces \"dir/\"".to_owned()),
        Just("[a, b, \"c\"]".to_owned()),
        Just("[]".to_owned()),
        Just("3".to_owned()),
        Just("2.5".to_owned()),
        Just("30s".to_owned()),
        Just("false".to_owned()),
        Just("env(\"A\", \"embedded\")".to_owned()),
        Just("[pg:source:load, \"sh:*\"]".to_owned()),
        Just("\"quote \\\" and \\\\ and \\n\"".to_owned()),
    ];
    let param = ("[a-z_]{1,8}", value, prop::bool::ANY).prop_map(|(k, v, comment)| {
        if comment {
            format!("{k} = {v} # note\n")
        } else {
            format!("{k} = {v}\n")
        }
    });
    let step = (
        prop::sample::select(&["pg:source:load", "minio:download", "sql:api:run", "sh:run"][..]),
        prop::option::of("[a-z]{1,5}"),
        prop::collection::vec(param.clone(), 0..5),
    )
        .prop_map(|(op, name, params)| {
            format!(
                "step {op} {} {{\n{}}}\n",
                name.unwrap_or_default(),
                params.concat()
            )
        });
    let block = (
        "[a-z]{1,6}",
        prop::collection::vec(param, 0..4),
        prop::bool::ANY,
    )
        .prop_map(|(name, params, schedule)| {
            let kw = if schedule { "schedule" } else { "check" };
            format!("{kw} {name} {{ {} }}\n", params.join(" "))
        });
    let item = prop_oneof![
        step,
        block,
        Just("database db = \"embedded\"\n".to_owned()),
        Just("storage s = env(\"S\")\n".to_owned()),
        Just("groups a -> b -> c\n".to_owned()),
        Just("env prod { database api = \"postgres://h/db\" }\n".to_owned()),
        Just("# a comment\n\n".to_owned()),
    ];
    (
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(item, 0..8),
    )
        .prop_map(|(name, items)| {
            let mut text = name.map(|n| format!("flow {n}\n")).unwrap_or_default();
            text.push_str(&items.concat());
            text
        })
}

fn compile_and_plan(text: &str) {
    let parsed = flow_dsl::parse(text);
    if let Ok(pipeline) = flow_engine::compile(&parsed.flow, &flow_plugins::registry(), "generated")
        && let Ok(selected) = Selection::default().apply(&pipeline)
    {
        let plan = Plan::new(&pipeline, &selected);
        let _ = plan.render();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_on_flowish_text(text in flowish()) {
        compile_and_plan(&text);
        let _ = flow_dsl::format(&text);
    }

    #[test]
    fn nothing_panics_on_any_text(text in "\\PC{0,200}") {
        compile_and_plan(&text);
        let _ = flow_dsl::format(&text);
    }

    #[test]
    fn formatting_keeps_the_meaning(text in valid_flow()) {
        let parsed = flow_dsl::parse(&text);
        prop_assert!(parsed.errors.is_empty(), "generated flow parses: {:?}\n{text}", parsed.errors);
        let formatted = flow_dsl::format(&text).expect("formats");
        let reparsed = flow_dsl::parse(&formatted);
        prop_assert!(reparsed.errors.is_empty(), "formatted flow parses:\n{formatted}");
        prop_assert_eq!(&reparsed.flow.items, &parsed.flow.items);
        prop_assert_eq!(reparsed.flow.comments.len(), parsed.flow.comments.len(), "comments kept:\n{}", formatted);
        let twice = flow_dsl::format(&formatted).expect("formats again");
        prop_assert_eq!(twice, formatted);
    }
}
