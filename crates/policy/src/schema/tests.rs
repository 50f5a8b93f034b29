use serde_json::{Value, json};

use super::*;

fn no_defs(_: &str) -> Option<Value> {
    None
}

/// The violations of `value` against `schema`, as `path: message` lines.
fn check_with(schema: Value, defs: &dyn Fn(&str) -> Option<Value>, value: Value) -> Vec<String> {
    let mut set = SchemaSet::default();
    let root = set.compile(&schema, defs).unwrap();
    set.validate(root, &value, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn check(schema: Value, value: Value) -> Vec<String> {
    check_with(schema, &no_defs, value)
}

fn ok(schema: Value, value: Value) {
    let errors = check(schema.clone(), value.clone());
    assert!(errors.is_empty(), "{value} against {schema}: {errors:?}");
}

fn bad(schema: Value, value: Value, expected: &str) {
    let errors = check(schema.clone(), value.clone());
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "{value} against {schema}: expected '{expected}', got {errors:?}"
    );
}

#[test]
fn type_accepts_its_kind_and_refuses_others() {
    ok(json!({"type": "string"}), json!("a"));
    ok(json!({"type": "integer"}), json!(3));
    ok(json!({"type": "integer"}), json!(3.0));
    ok(json!({"type": "number"}), json!(3));
    ok(json!({"type": ["string", "null"]}), json!(null));
    bad(
        json!({"type": "integer"}),
        json!(3.5),
        "/: is a number; expected integer",
    );
    bad(
        json!({"type": "object"}),
        json!([1]),
        "is an array; expected object",
    );
    bad(
        json!({"type": "boolean"}),
        json!("true"),
        "is a string; expected boolean",
    );
}

#[test]
fn nullable_allows_null() {
    ok(json!({"type": "string", "nullable": true}), json!(null));
    bad(json!({"type": "string"}), json!(null), "expected string");
}

#[test]
fn properties_required_and_additional_properties() {
    let schema = json!({
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "additionalProperties": false
    });
    ok(schema.clone(), json!({"name": "a", "age": 3}));
    bad(
        schema.clone(),
        json!({"age": 3}),
        "/: the required property 'name' is missing",
    );
    bad(
        schema.clone(),
        json!({"name": 1}),
        "/name: is an integer; expected string",
    );
    bad(
        schema,
        json!({"name": "a", "x": 1}),
        "the property 'x' is not allowed",
    );
    // additionalProperties as a schema.
    let map = json!({"type": "object", "additionalProperties": {"type": "integer"}});
    ok(map.clone(), json!({"a": 1}));
    bad(map, json!({"a": "1"}), "/a: is a string; expected integer");
}

#[test]
fn allow_additional_properties_overrides_the_schema() {
    let mut set = SchemaSet::default();
    let closed = set
        .compile(
            &json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false}),
            &no_defs,
        )
        .unwrap();
    let open = set
        .compile(
            &json!({"type": "object", "properties": {"a": {}}}),
            &no_defs,
        )
        .unwrap();
    let extra = json!({"a": 1, "b": 2});
    assert!(set.validate(closed, &extra, Some(true)).is_empty());
    assert!(!set.validate(closed, &extra, None).is_empty());
    assert!(set.validate(open, &extra, None).is_empty());
    assert_eq!(
        set.validate(open, &extra, Some(false))[0].to_string(),
        "/: the property 'b' is not allowed"
    );
}

#[test]
fn items_and_their_count_with_a_clear_path() {
    let schema = json!({
        "type": "object",
        "properties": {"items": {
            "type": "array", "minItems": 1, "maxItems": 3,
            "items": {"type": "object", "required": ["name"],
                      "properties": {"name": {"type": "string"}}}
        }}
    });
    ok(schema.clone(), json!({"items": [{"name": "a"}]}));
    let errors = check(
        schema.clone(),
        json!({"items": [{"name": "a"}, {"name": "b"}, {"name": 7}]}),
    );
    assert_eq!(
        errors,
        vec!["/items/2/name: is an integer; expected string"]
    );
    bad(
        schema.clone(),
        json!({"items": []}),
        "/items: has 0 items; the fewest allowed is 1",
    );
    bad(
        schema,
        json!({"items": [{"name": "a"}, {"name": "a"}, {"name": "a"}, {"name": "a"}]}),
        "has 4 items; the most allowed is 3",
    );
}

#[test]
fn enum_and_const() {
    ok(json!({"enum": ["a", "b"]}), json!("b"));
    bad(
        json!({"enum": ["a", "b"]}),
        json!("c"),
        r#""c" is not one of ["a","b"]"#,
    );
    ok(json!({"const": 2}), json!(2.0));
    bad(json!({"const": 2}), json!(3), "3 is not 2");
}

#[test]
fn numeric_bounds_inclusive_and_exclusive() {
    ok(json!({"minimum": 1, "maximum": 3}), json!(3));
    bad(json!({"minimum": 1}), json!(0), "0 is less than 1");
    bad(json!({"maximum": 3}), json!(4), "4 is greater than 3");
    // OpenAPI 3.0 booleans.
    bad(
        json!({"maximum": 3, "exclusiveMaximum": true}),
        json!(3),
        "greater than or equal to 3",
    );
    // OpenAPI 3.1 numbers.
    bad(
        json!({"exclusiveMinimum": 1}),
        json!(1),
        "less than or equal to 1",
    );
    ok(json!({"exclusiveMinimum": 1}), json!(1.5));
}

#[test]
fn string_length_in_characters_and_pattern() {
    ok(json!({"minLength": 2, "maxLength": 3}), json!("héé"));
    bad(
        json!({"minLength": 2}),
        json!("a"),
        "is 1 characters long; the shortest allowed is 2",
    );
    bad(
        json!({"maxLength": 2}),
        json!("abc"),
        "the longest allowed is 2",
    );
    ok(json!({"pattern": "^[a-z]+$"}), json!("abc"));
    bad(
        json!({"pattern": "^[a-z]+$"}),
        json!("ab1"),
        "does not match the pattern '^[a-z]+$'",
    );
}

#[test]
fn refs_to_definitions_including_recursive_ones() {
    let defs = |name: &str| match name {
        "Pet" => Some(json!({"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string"},
                                            "parent": {"$ref": "#/components/schemas/Pet"}}})),
        "Id" => Some(json!({"type": "integer"})),
        _ => None,
    };
    let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Pet"}});
    assert!(
        check_with(
            schema.clone(),
            &defs,
            json!([{"name": "a", "parent": {"name": "b"}}])
        )
        .is_empty()
    );
    assert_eq!(
        check_with(
            schema,
            &defs,
            json!([{"name": "a", "parent": {"parent": {"name": "c"}}}])
        ),
        vec!["/0/parent: the required property 'name' is missing"]
    );
    // Swagger 2.0's form.
    assert_eq!(
        check_with(json!({"$ref": "#/definitions/Id"}), &defs, json!("x")),
        vec!["/: is a string; expected integer"]
    );
    // A reference to nothing is refused when compiled, with where.
    let mut set = SchemaSet::default();
    let e = set
        .compile(
            &json!({"properties": {"a": {"$ref": "#/components/schemas/Nope"}}}),
            &defs,
        )
        .unwrap_err();
    assert_eq!(e.at, "#/properties/a");
    assert!(e.message.contains("names no definition"), "{e}");
}

#[test]
fn all_of_any_of_one_of() {
    let all = json!({"allOf": [{"required": ["a"]}, {"required": ["b"]}]});
    ok(all.clone(), json!({"a": 1, "b": 2}));
    bad(all, json!({"a": 1}), "the required property 'b' is missing");
    let any = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
    ok(any.clone(), json!(1));
    bad(any, json!(true), "matches none of the 2 schemas of anyOf");
    let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    // 1 is an integer and a number: two match.
    bad(one.clone(), json!(1), "matches 2 of the 2 schemas of oneOf");
    ok(one, json!(1.5));
}

#[test]
fn bad_schemas_are_refused_with_where() {
    let mut set = SchemaSet::default();
    let e = set
        .compile(&json!({"properties": {"a": {"pattern": "("}}}), &no_defs)
        .unwrap_err();
    assert_eq!(e.at, "#/properties/a/pattern");
    let e = set.compile(&json!({"type": "str"}), &no_defs).unwrap_err();
    assert!(e.message.contains("unknown type 'str'"), "{e}");
}

#[test]
fn errors_are_capped_and_deep_values_stop() {
    let schema = json!({"type": "array", "items": {"type": "string"}});
    let errors = check(schema, json!((0..100).collect::<Vec<_>>()));
    assert_eq!(errors.len(), MAX_ERRORS);
    // A value nested deeper than the limit fails instead of recursing on.
    let mut deep = json!(1);
    for _ in 0..(MAX_DEPTH + 5) {
        deep = json!([deep]);
    }
    let mut set = SchemaSet::default();
    let defs = |_: &str| {
        Some(
            json!({"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/definitions/N"}}]}),
        )
    };
    let root = set
        .compile(&json!({"$ref": "#/definitions/N"}), &defs)
        .unwrap();
    assert!(!set.validate(root, &deep, None).is_empty());
}

#[test]
fn formats_are_checked_only_when_asked() {
    let mut set = SchemaSet::default();
    let root = set
        .compile(&json!({"type": "string", "format": "uuid"}), &no_defs)
        .unwrap();
    // Bodies (validate-content) keep Azure's leniency.
    assert!(set.validate(root, &json!("nope"), None).is_empty());
    let strict = Options {
        allow_additional: None,
        formats: true,
    };
    let errors = set.validate_with(root, &json!("nope"), strict);
    assert_eq!(errors[0].message, r#""nope" is not a valid uuid"#);
    let root = set.compile(&json!({"format": "ipv4"}), &no_defs).unwrap();
    assert!(
        set.validate_with(root, &json!("10.0.0.1"), strict)
            .is_empty()
    );
    assert!(
        !set.validate_with(root, &json!("10.0.0.300"), strict)
            .is_empty()
    );
    // A format says nothing of values of other kinds.
    assert!(set.validate_with(root, &json!(5), strict).is_empty());
}

#[test]
fn kinds_and_items_look_through_references() {
    let defs = |name: &str| match name {
        "Ids" => Some(json!({"type": "array", "items": {"$ref": "#/definitions/Id"}})),
        "Id" => Some(json!({"type": "integer"})),
        _ => None,
    };
    let mut set = SchemaSet::default();
    let root = set
        .compile(&json!({"$ref": "#/definitions/Ids"}), &defs)
        .unwrap();
    assert!(set.kinds(root).array());
    let items = set.items(root).unwrap();
    assert!(set.kinds(items).integer() && !set.kinds(items).string());
    let any = set.compile(&json!({"description": "x"}), &defs).unwrap();
    assert!(set.kinds(any).any());
}
