use std::borrow::Cow;

use gatehouse_model::snapshot::{ParameterLocation, ParameterSchema, ParameterStyle};
use serde_json::{Value, json};

use super::*;

fn compiled(
    location: ParameterLocation,
    style: ParameterStyle,
    required: bool,
    schema: Value,
) -> (SchemaSet, Parameter) {
    let mut set = SchemaSet::default();
    let defs = |name: &str| (name == "Id").then(|| json!({"type": "string", "format": "uuid"}));
    let def = ParameterSchema {
        name: "p".into(),
        location,
        required,
        schema: Some(schema),
        style,
    };
    let p = Parameter::compile(&def, &mut set, &defs, &mut |m| panic!("{m}"));
    (set, p)
}

fn check(p: &(SchemaSet, Parameter), texts: &[&str]) -> Result<(), Fault> {
    let texts: Vec<Cow<'_, str>> = texts.iter().map(|t| Cow::Borrowed(*t)).collect();
    p.1.check(&p.0, &texts)
}

fn query(schema: Value) -> (SchemaSet, Parameter) {
    compiled(
        ParameterLocation::Query,
        ParameterStyle::Multi,
        false,
        schema,
    )
}

#[test]
fn scalars_are_read_as_their_type_and_checked() {
    let p = query(json!({"type": "integer", "minimum": 1, "maximum": 50}));
    assert_eq!(check(&p, &["12"]), Ok(()));
    assert_eq!(check(&p, &["+7"]), Ok(()));
    assert_eq!(check(&p, &[]), Ok(()), "optional and absent");
    assert_eq!(
        check(&p, &["abc"]),
        Err(Fault::Unparsable("'abc' is not an integer".into()))
    );
    assert_eq!(
        check(&p, &["1.5"]),
        Err(Fault::Unparsable("'1.5' is not an integer".into()))
    );
    assert_eq!(
        check(&p, &["60"]),
        Err(Fault::Nonconforming("60 is greater than 50".into()))
    );
    assert_eq!(check(&p, &["3", "4"]), Err(Fault::Multiple));

    let p = query(json!({"type": "number"}));
    assert_eq!(check(&p, &["2.5"]), Ok(()));
    assert!(matches!(check(&p, &["NaN"]), Err(Fault::Unparsable(_))));

    let p = query(json!({"type": "boolean"}));
    assert_eq!(check(&p, &["True"]), Ok(()));
    assert!(matches!(check(&p, &["yes"]), Err(Fault::Unparsable(_))));

    let p = query(json!({"type": "string", "enum": ["asc", "desc"]}));
    assert_eq!(check(&p, &["asc"]), Ok(()));
    assert_eq!(
        check(&p, &["up"]),
        Err(Fault::Nonconforming(
            r#""up" is not one of ["asc","desc"]"#.into()
        ))
    );
}

#[test]
fn formats_are_checked_for_parameters() {
    let p = query(json!({"$ref": "#/components/schemas/Id"}));
    assert_eq!(check(&p, &["0b9a4a3e-6f3c-4c8e-9a55-2f0b7f1f3a10"]), Ok(()));
    assert_eq!(
        check(&p, &["not-a-uuid"]),
        Err(Fault::Nonconforming(
            r#""not-a-uuid" is not a valid uuid"#.into()
        ))
    );
    let p = query(json!({"type": "string", "format": "date-time"}));
    assert_eq!(check(&p, &["2024-03-01T10:00:00Z"]), Ok(()));
    assert!(matches!(
        check(&p, &["yesterday"]),
        Err(Fault::Nonconforming(_))
    ));
    let p = query(json!({"type": "string", "format": "date"}));
    assert_eq!(check(&p, &["2024-02-29"]), Ok(()));
    assert!(matches!(
        check(&p, &["2023-02-29"]),
        Err(Fault::Nonconforming(_))
    ));
    let p = query(json!({"type": "integer", "format": "int32"}));
    assert_eq!(check(&p, &["2147483647"]), Ok(()));
    assert_eq!(
        check(&p, &["2147483648"]),
        Err(Fault::Nonconforming(
            "2147483648 is not a valid int32".into()
        ))
    );
}

#[test]
fn arrays_are_split_as_their_style_says() {
    let items = json!({"type": "array", "items": {"type": "integer", "maximum": 9}, "maxItems": 3});
    let multi = query(items.clone());
    assert_eq!(check(&multi, &["1", "2"]), Ok(()));
    assert_eq!(
        check(&multi, &["1", "12"]),
        Err(Fault::Nonconforming("/1: 12 is greater than 9".into()))
    );
    let csv = compiled(
        ParameterLocation::Query,
        ParameterStyle::Csv,
        false,
        items.clone(),
    );
    assert_eq!(check(&csv, &["1,2,3"]), Ok(()));
    assert_eq!(
        check(&csv, &["1,2,3,4"]),
        Err(Fault::Nonconforming(
            "has 4 items; the most allowed is 3".into()
        ))
    );
    assert_eq!(check(&csv, &["1", "2"]), Err(Fault::Multiple));
    assert_eq!(
        check(&csv, &["1,x"]),
        Err(Fault::Unparsable("'x' is not an integer".into()))
    );
    let pipes = compiled(
        ParameterLocation::Query,
        ParameterStyle::Pipes,
        false,
        items.clone(),
    );
    assert_eq!(check(&pipes, &["1|2"]), Ok(()));
    // A list header may come in several lines.
    let header = compiled(ParameterLocation::Header, ParameterStyle::Csv, false, items);
    assert_eq!(check(&header, &["1, 2", "3"]), Ok(()));
    assert!(matches!(
        check(&header, &["1, 2", "3, 4"]),
        Err(Fault::Nonconforming(_))
    ));
}

#[test]
fn required_json_and_unchecked_parameters() {
    let p = compiled(
        ParameterLocation::Header,
        ParameterStyle::Csv,
        true,
        json!({"type": "string"}),
    );
    assert_eq!(check(&p, &[]), Err(Fault::Missing));
    assert!(p.1.is("P"), "header names ignore case");

    let json_style = compiled(
        ParameterLocation::Query,
        ParameterStyle::Json,
        false,
        json!({"type": "object", "required": ["a"]}),
    );
    assert_eq!(check(&json_style, &[r#"{"a": 1}"#]), Ok(()));
    assert!(matches!(
        check(&json_style, &["{"]),
        Err(Fault::Unparsable(_))
    ));
    assert_eq!(
        check(&json_style, &["{}"]),
        Err(Fault::Nonconforming(
            "the required property 'a' is missing".into()
        ))
    );

    let unchecked = compiled(
        ParameterLocation::Query,
        ParameterStyle::Unchecked,
        true,
        json!({"type": "integer"}),
    );
    assert_eq!(check(&unchecked, &["anything"]), Ok(()));
    assert_eq!(check(&unchecked, &[]), Err(Fault::Missing));
}
