//! OpenAPI import against the documents in `tests/fixtures/openapi` and broken documents.
// Helpers outside `#[test]` functions panic on purpose: this whole crate is tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatehouse_model::openapi::{ImportedApi, import};
use gatehouse_model::resources::{Operation, TemplateParameter};
use gatehouse_model::{Detail, ValidationError};
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn import_ok(text: &str) -> ImportedApi {
    match import(text) {
        Ok(api) => api,
        Err(e) => panic!("import failed: {e}\n{:#?}", e.details),
    }
}

fn import_err(text: &str) -> ValidationError {
    match import(text) {
        Ok(api) => panic!(
            "import should fail, got {} operations",
            api.operations.len()
        ),
        Err(e) => e,
    }
}

fn only_detail(e: &ValidationError) -> &Detail {
    assert_eq!(e.details.len(), 1, "{e}: {:#?}", e.details);
    &e.details[0]
}

fn param(name: &str, type_: &str, description: Option<&str>) -> TemplateParameter {
    TemplateParameter {
        name: name.into(),
        type_: type_.into(),
        required: true,
        description: description.map(str::to_owned),
    }
}

fn op(
    id: &str,
    display_name: &str,
    method: &str,
    url_template: &str,
    template_parameters: Vec<TemplateParameter>,
    description: Option<&str>,
) -> Operation {
    Operation {
        id: id.into(),
        display_name: display_name.into(),
        method: method.into(),
        url_template: url_template.into(),
        template_parameters,
        description: description.map(str::to_owned),
    }
}

fn find<'a>(api: &'a ImportedApi, id: &str) -> &'a Operation {
    api.operations
        .iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("no operation '{id}'"))
}

/// Counts (path, method) pairs by walking a document read independently of the importer.
fn count_operations(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| !path.starts_with("x-"))
        .map(|(_, item)| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
        .sum()
}

fn assert_ids_unique_and_valid(api: &ImportedApi) {
    let mut seen = std::collections::HashSet::new();
    for o in &api.operations {
        gatehouse_model::resources::validate_id("operation", &o.id)
            .unwrap_or_else(|e| panic!("{}: {e}", o.id));
        assert!(
            seen.insert(o.id.to_ascii_lowercase()),
            "duplicate id {}",
            o.id
        );
    }
}

// ------------------------------------------------------------------------------------------
// Petstores

fn petstore_operations() -> Vec<Operation> {
    vec![
        op("listPets", "List all pets", "GET", "/pets", vec![], None),
        op("createPets", "Create a pet", "POST", "/pets", vec![], None),
        op(
            "showPetById",
            "Info for a specific pet",
            "GET",
            "/pets/{petId}",
            vec![param(
                "petId",
                "string",
                Some("The id of the pet to retrieve"),
            )],
            None,
        ),
    ]
}

#[test]
fn petstore_swagger2() {
    let api = import_ok(&fixture("petstore-swagger2.json"));
    assert_eq!(api.title.as_deref(), Some("Swagger Petstore"));
    assert_eq!(api.version.as_deref(), Some("1.0.0"));
    assert_eq!(api.description, None);
    assert_eq!(
        api.service_url.as_deref(),
        Some("http://petstore.swagger.io/v1")
    );
    assert_eq!(api.operations, petstore_operations());
    assert_eq!(api.document["swagger"], "2.0");
    assert_eq!(
        api.document["paths"]["/pets"]["get"]["responses"]["200"]["description"],
        "An paged array of pets"
    );
}

#[test]
fn petstore_openapi3() {
    let api = import_ok(&fixture("petstore-openapi3.yaml"));
    assert_eq!(api.title.as_deref(), Some("Swagger Petstore"));
    assert_eq!(api.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        api.service_url.as_deref(),
        Some("http://petstore.swagger.io/v1")
    );
    assert_eq!(api.operations, petstore_operations());
    // Quoted and unquoted response codes both become string keys.
    let responses = &api.document["paths"]["/pets"]["get"]["responses"];
    assert!(responses["200"].is_object());
    assert!(responses["default"].is_object());
    assert_eq!(
        api.document["components"]["schemas"]["Pets"]["maxItems"],
        100
    );
}

// ------------------------------------------------------------------------------------------
// Real-world documents

#[test]
fn kubernetes_swagger2() {
    let text = fixture("kubernetes-1.7-swagger2.json");
    let independent: Value = serde_json::from_str(&text).unwrap();
    let expected = count_operations(&independent);
    assert_eq!(expected, 710);

    let api = import_ok(&text);
    assert_eq!(api.operations.len(), expected);
    assert_eq!(api.title.as_deref(), Some("Kubernetes"));
    assert_eq!(api.version.as_deref(), Some("v1.7.13"));
    assert_eq!(api.service_url, None, "the document has no host");
    assert_eq!(api.document, independent);
    assert_ids_unique_and_valid(&api);

    // Document order: the first path is "/api/" (trailing slash dropped), the last "/version/".
    let first = &api.operations[0];
    assert_eq!(
        (
            first.id.as_str(),
            first.method.as_str(),
            first.url_template.as_str()
        ),
        ("getCoreAPIVersions", "GET", "/api")
    );
    let last = api.operations.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.url_template.as_str()),
        ("GET", "/version")
    );

    // Path parameters declared on the path item, listed in the template's order.
    let pod = find(&api, "readCoreV1NamespacedPod");
    assert_eq!(
        pod,
        &op(
            "readCoreV1NamespacedPod",
            "readCoreV1NamespacedPod",
            "GET",
            "/api/v1/namespaces/{namespace}/pods/{name}",
            vec![
                param(
                    "namespace",
                    "string",
                    Some("object name and auth scope, such as for teams and projects")
                ),
                param("name", "string", Some("name of the Pod")),
            ],
            Some("read the specified Pod"),
        )
    );
    let proxy = find(&api, "proxyCoreV1HEADNamespacedPodWithPath");
    assert_eq!(proxy.method, "HEAD");
    assert_eq!(
        proxy.url_template,
        "/api/v1/proxy/namespaces/{namespace}/pods/{name}/{path}"
    );
    let names: Vec<&str> = proxy
        .template_parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["namespace", "name", "path"]);
    assert_eq!(
        proxy.template_parameters[2].description.as_deref(),
        Some("path to the resource")
    );
    let options = api
        .operations
        .iter()
        .filter(|o| o.method == "OPTIONS")
        .count();
    assert!(options > 0);
}

#[test]
fn star_trek_openapi3_yaml() {
    let text = fixture("star-trek-openapi3.yaml");
    let independent: Value = serde_saphyr::from_str(&text).unwrap();
    let expected = count_operations(&independent);
    assert_eq!(expected, 120);

    let api = import_ok(&text);
    assert_eq!(api.operations.len(), expected);
    assert_eq!(api.title.as_deref(), Some("STAPI"));
    assert_eq!(api.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        api.service_url.as_deref(),
        Some("http://stapi.co/api/v1/rest")
    );
    assert_eq!(api.document, independent);
    assert_ids_unique_and_valid(&api);

    // No operationId nor summary anywhere: ids come from method and path, names are
    // "METHOD path", in the document's order.
    let firsts: Vec<(&str, &str, &str)> = api.operations[..4]
        .iter()
        .map(|o| {
            (
                o.id.as_str(),
                o.display_name.as_str(),
                o.url_template.as_str(),
            )
        })
        .collect();
    assert_eq!(
        firsts,
        [
            ("get-animal", "GET /animal", "/animal"),
            ("get-animal-search", "GET /animal/search", "/animal/search"),
            (
                "post-animal-search",
                "POST /animal/search",
                "/animal/search"
            ),
            (
                "get-astronomicalobject",
                "GET /astronomicalObject",
                "/astronomicalObject"
            ),
        ]
    );
    assert_eq!(
        find(&api, "post-animal-search").description.as_deref(),
        Some("Searching animals")
    );
    let last = api.operations.last().unwrap();
    assert_eq!(
        last,
        &op(
            "post-weapon-search",
            "POST /weapon/search",
            "POST",
            "/weapon/search",
            vec![],
            Some("Searching weapons"),
        )
    );
    assert!(
        api.operations
            .iter()
            .all(|o| o.template_parameters.is_empty())
    );
}

// ------------------------------------------------------------------------------------------
// Operations: parameters, references, ids

#[test]
fn parameters_references_and_overrides() {
    let doc = r##"
openapi: 3.1.0
info: {title: Refs, version: "2"}
servers:
  - url: "https://{region}.example.com/{base}/"
    variables:
      region: {default: eu}
      base: {default: v2}
paths:
  /users/{userId}/items/{itemId}:
    parameters:
      - $ref: "#/components/parameters/UserId"
      - name: itemId
        in: path
        required: true
        description: from the path item
        schema: {type: string}
    get:
      operationId: get item
      parameters:
        - name: itemId
          in: path
          required: true
          description: overridden by the operation
          schema: {$ref: "#/components/schemas/Count"}
        - name: verbose
          in: query
          schema: {type: boolean}
    delete:
      summary: "  "
      responses: {}
  /files/{*rest}:
    get:
      operationId: get item
  /:
    get:
      summary: Root
  x-extension: {ignored: true}
components:
  parameters:
    UserId:
      $ref: "#/components/parameters/UserIdReal"
    UserIdReal:
      name: userId
      in: path
      required: true
      description: the user
      schema:
        type: [integer, "null"]
  schemas:
    Count: {type: integer}
"##;
    let api = import_ok(doc);
    assert_eq!(
        api.service_url.as_deref(),
        Some("https://eu.example.com/v2")
    );
    assert_eq!(
        api.operations,
        vec![
            op(
                "get-item",
                "get item",
                "GET",
                "/users/{userId}/items/{itemId}",
                vec![
                    param("userId", "integer", Some("the user")),
                    param("itemId", "integer", Some("overridden by the operation")),
                ],
                None,
            ),
            op(
                "delete-users-userid-items-itemid",
                "DELETE /users/{userId}/items/{itemId}",
                "DELETE",
                "/users/{userId}/items/{itemId}",
                vec![
                    param("userId", "integer", Some("the user")),
                    param("itemId", "string", Some("from the path item")),
                ],
                None,
            ),
            op(
                "get-item-2",
                "get item",
                "GET",
                "/files/{*rest}",
                vec![param("rest", "string", None)],
                None,
            ),
            op("get", "Root", "GET", "/", vec![], None),
        ]
    );
}

#[test]
fn swagger2_parameter_refs_and_undeclared_parameters() {
    let doc = r##"{
  "swagger": "2.0",
  "info": {"title": "S", "version": "1"},
  "host": "api.example.com:8443",
  "schemes": ["https", "http"],
  "parameters": {
    "Id": {"name": "id", "in": "path", "required": true, "type": "integer", "description": "the id"}
  },
  "paths": {
    "/things/{id}/parts/{part}/": {
      "get": {"operationId": "getPart", "parameters": [{"$ref": "#/parameters/Id"}]},
      "put": {"operationId": "getPart", "summary": "Replace a part"},
      "post": {"operationId": "getPart-2"}
    }
  }
}"##;
    let api = import_ok(doc);
    assert_eq!(
        api.service_url.as_deref(),
        Some("https://api.example.com:8443")
    );
    let expected_params = |id_type: &str, id_description: Option<&str>| {
        vec![
            param("id", id_type, id_description),
            param("part", "string", None),
        ]
    };
    assert_eq!(
        api.operations,
        vec![
            op(
                "getPart",
                "getPart",
                "GET",
                "/things/{id}/parts/{part}",
                expected_params("integer", Some("the id")),
                None
            ),
            op(
                "getPart-2",
                "Replace a part",
                "PUT",
                "/things/{id}/parts/{part}",
                expected_params("string", None),
                None
            ),
            op(
                "getPart-2-2",
                "getPart-2",
                "POST",
                "/things/{id}/parts/{part}",
                expected_params("string", None),
                None
            ),
        ]
    );
}

#[test]
fn yaml_keys_anchors_and_merge_keys() {
    let doc = r#"
openapi: 3.0.3
info:
  title: Anchors
  version: 1.0
  description: &desc Shared words
x-common: &common
  summary: Common summary
  responses:
    200: {description: ok}
    404: {description: missing}
paths:
  /a:
    get:
      <<: *common
      operationId: a
      description: *desc
    post: *common
"#;
    let api = import_ok(doc);
    assert_eq!(api.version.as_deref(), Some("1.0"));
    assert_eq!(api.description.as_deref(), Some("Shared words"));
    assert_eq!(api.operations.len(), 2);
    assert_eq!(api.operations[0].id, "a");
    assert_eq!(api.operations[0].display_name, "Common summary");
    assert_eq!(
        api.operations[0].description.as_deref(),
        Some("Shared words")
    );
    assert_eq!(api.operations[1].id, "post-a");
    assert_eq!(
        api.document["paths"]["/a"]["get"]["responses"]["200"]["description"],
        "ok"
    );
    assert_eq!(
        api.document["paths"]["/a"]["post"]["responses"]["404"]["description"],
        "missing"
    );
    assert!(api.document["paths"]["/a"]["get"].get("<<").is_none());
}

#[test]
fn service_url_rules() {
    let oas = |servers: &str| {
        import_ok(&format!(
            "openapi: 3.0.0\ninfo: {{title: t, version: v}}\n{servers}\npaths: {{}}\n"
        ))
        .service_url
    };
    assert_eq!(oas("servers: [{url: /relative}]"), None);
    assert_eq!(oas("servers: [{url: 'ftp://files.example.com'}]"), None);
    assert_eq!(
        oas("servers: [{url: 'https://{tenant}.example.com'}]"),
        None
    );
    assert_eq!(
        oas("servers: [{url: 'https://a.example.com/'}, {url: 'https://b.example.com'}]"),
        Some("https://a.example.com".to_owned())
    );
    assert_eq!(oas("x-none: 1"), None);

    let swagger = |extra: &str| {
        import_ok(&format!(
            r#"{{"swagger": "2.0", "info": {{"title": "t", "version": "v"}}, {extra} "paths": {{}}}}"#
        ))
        .service_url
    };
    assert_eq!(swagger(""), None);
    assert_eq!(
        swagger(r#""host": "h.example.com","#),
        Some("https://h.example.com".to_owned())
    );
    assert_eq!(
        swagger(r#""host": "h.example.com", "schemes": ["http", "https"], "basePath": "/api/","#),
        Some("http://h.example.com/api".to_owned())
    );
    assert_eq!(
        swagger(r#""host": "h.example.com", "schemes": ["wss"],"#),
        None
    );
}

// ------------------------------------------------------------------------------------------
// Broken documents

#[test]
fn bad_json_reports_line_and_column() {
    let e = import_err("{\n  \"openapi\": \"3.0.0\",\n  \"paths\": {,}\n}");
    let d = only_detail(&e);
    assert_eq!(d.target, "document");
    assert_eq!((d.line, d.column), (Some(3), Some(13)));
    assert!(
        e.message
            .starts_with("The OpenAPI document is not valid JSON: "),
        "{}",
        e.message
    );
    assert!(e.message.ends_with("at line 3, column 13"), "{}", e.message);
    assert!(!e.message.contains('\n'));
}

#[test]
fn bad_yaml_reports_line_and_column() {
    let e = import_err("openapi: 3.0.0\ninfo:\n  title: x\n version: 1\npaths: {}\n");
    let d = only_detail(&e);
    assert_eq!(d.target, "document");
    assert_eq!(d.line, Some(4));
    assert!(d.column.is_some());
    assert!(
        e.message
            .starts_with("The OpenAPI document is not valid YAML: "),
        "{}",
        e.message
    );
    assert!(e.message.contains("at line 4, column"), "{}", e.message);
    assert!(!e.message.contains('\n'));
}

#[test]
fn duplicate_keys_are_reported_where_they_are() {
    let e = import_err("{\"openapi\": \"3.0.0\",\n\"openapi\": \"3.1.0\", \"paths\": {}}");
    assert_eq!(only_detail(&e).line, Some(2));
    let e = import_err("openapi: 3.0.0\npaths:\n  /a: {}\n  /a: {}\n");
    assert_eq!(only_detail(&e).line, Some(4));
}

#[test]
fn missing_paths() {
    let e = import_err(r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}}"#);
    assert_eq!(only_detail(&e).target, "paths");
    assert!(only_detail(&e).message.contains("is missing"));
    assert!(e.message.contains("'paths'"), "{}", e.message);
    let e = import_err("openapi: 3.0.3\npaths: [/a]\n");
    assert_eq!(only_detail(&e).target, "paths");
    assert!(only_detail(&e).message.contains("must be an object"));
}

#[test]
fn unsupported_versions() {
    let e = import_err(r#"{"swaggerVersion": "1.2", "apis": []}"#);
    assert_eq!(only_detail(&e).target, "swaggerVersion");
    assert!(only_detail(&e).message.contains("1.2"));
    let e = import_err(r#"{"swagger": "1.2", "paths": {}}"#);
    assert_eq!(only_detail(&e).target, "swagger");
    assert!(only_detail(&e).message.contains("Swagger 2.0"));
    let e = import_err("openapi: 4.0.0\npaths: {}\n");
    assert_eq!(only_detail(&e).target, "openapi");
    assert!(only_detail(&e).message.contains("3.0.x or 3.1.x"));
    let e = import_err("info: {title: t}\npaths: {}\n");
    assert_eq!(only_detail(&e).target, "openapi");
    assert!(only_detail(&e).message.contains("is missing"));
    // An unquoted `swagger: 2.0` is still Swagger 2.0.
    assert!(import("swagger: 2.0\npaths: {}\n").is_ok());
}

#[test]
fn not_an_object() {
    for (text, kind) in [
        ("[1, 2]", "an array"),
        ("\"openapi\"", "a string"),
        ("just text", "a string"),
        ("- a\n- b\n", "an array"),
    ] {
        let e = import_err(text);
        assert_eq!(only_detail(&e).target, "document");
        assert!(only_detail(&e).message.contains(kind), "{text}: {e}");
        assert!(e.message.contains("must be an object"), "{}", e.message);
    }
    let e = import_err("   \n");
    assert!(only_detail(&e).message.contains("is empty"), "{e}");
}

#[test]
fn bad_paths_are_each_reported() {
    let doc = r##"{
  "openapi": "3.0.0",
  "paths": {
    "/pets//toys": {"get": {}},
    "pets": {"get": {}},
    "/pets/{id}.json": {"get": {}},
    "/ok/{id}": {"get": {}, "put": "not an operation"},
    "/bad-item": [],
    "/refs/{id}": {"get": {"parameters": [{"$ref": "#/components/parameters/Nope"},
                                          {"$ref": "common.yaml#/Id"}]}}
  }
}"##;
    let e = import_err(doc);
    let targets: Vec<&str> = e.details.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "paths./pets//toys",
            "paths.pets",
            "paths./pets/{id}.json",
            "paths./ok/{id}.put",
            "paths./bad-item",
            "paths./refs/{id}.get.parameters[0]",
            "paths./refs/{id}.get.parameters[1]",
        ]
    );
    assert!(
        e.details[0].message.contains("empty segment"),
        "{:?}",
        e.details[0]
    );
    assert!(
        e.details[1].message.contains("'/pets'"),
        "{:?}",
        e.details[1]
    );
    assert!(e.details[5].message.contains("points to nothing"));
    assert!(e.details[6].message.contains("outside this document"));
    assert!(
        e.message.starts_with(
            "The OpenAPI document cannot be imported: 7 problems, the first: 'paths./pets//toys'"
        ),
        "{}",
        e.message
    );
}

#[test]
fn a_single_bad_path_gives_a_single_sentence() {
    let e = import_err("openapi: 3.1.0\npaths:\n  /a//b:\n    get: {}\n");
    assert_eq!(only_detail(&e).target, "paths./a//b");
    assert!(
        e.message
            .starts_with("The OpenAPI document cannot be imported: 'paths./a//b' cannot be used as a URL template"),
        "{}",
        e.message
    );
}

#[test]
fn reference_cycles_are_reported() {
    let doc = r##"
openapi: 3.0.0
paths:
  /a/{x}:
    parameters:
      - $ref: "#/components/parameters/A"
    get: {}
components:
  parameters:
    A: {$ref: "#/components/parameters/B"}
    B: {$ref: "#/components/parameters/A"}
"##;
    let e = import_err(doc);
    assert_eq!(only_detail(&e).target, "paths./a/{x}.parameters[0]");
    assert!(only_detail(&e).message.contains("cycle"));
}

#[test]
fn many_problems_are_capped() {
    let mut doc = String::from("openapi: 3.0.0\npaths:\n");
    for i in 0..200 {
        doc.push_str(&format!("  bad{i}: {{}}\n"));
    }
    let e = import_err(&doc);
    assert!(e.details.len() <= 51);
    assert!(e.message.contains("200 problems"), "{}", e.message);
}

// ------------------------------------------------------------------------------------------
// Hostile input

#[test]
fn yaml_billion_laughs_is_rejected_quickly() {
    let mut doc =
        String::from("openapi: 3.0.0\nx-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut previous = "a".to_owned();
    for name in ["b", "c", "d", "e", "f", "g", "h", "i", "j"] {
        let refs = vec![format!("*{previous}"); 9].join(", ");
        doc.push_str(&format!("x-{name}: &{name} [{refs}]\n"));
        previous = name.to_owned();
    }
    doc.push_str("paths: {}\n");
    let started = Instant::now();
    let e = import_err(&doc);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.message
            .starts_with("The OpenAPI document is not valid YAML"),
        "{e}"
    );
    assert!(e.message.contains("aliases"), "{e}");
    assert!(only_detail(&e).line.is_some());
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    // Runs on the test thread's default (2 MiB) stack on purpose.
    for text in [
        format!(
            "{{\"openapi\": \"3.0.0\", \"x\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!(
            "openapi: 3.0.0\nx: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!(
            "openapi: 3.0.0\nx: {}1{}\n",
            "{a: ".repeat(200),
            "}".repeat(200)
        ),
        {
            let mut block = String::from("openapi: 3.0.0\n");
            for depth in 0..300 {
                block.push_str(&" ".repeat(depth));
                block.push_str("a:\n");
            }
            block
        },
        // Aliases nesting anchors that are each nearly as deep as allowed.
        {
            let mut chain = format!(
                "openapi: 3.0.0\nx0: &x0 {}1{}\n",
                "[".repeat(60),
                "]".repeat(60)
            );
            for i in 1..30 {
                chain.push_str(&format!(
                    "x{i}: &x{i} {}*x{}{}\n",
                    "[".repeat(60),
                    i - 1,
                    "]".repeat(60)
                ));
            }
            chain
        },
    ] {
        let e = import_err(&text);
        assert_eq!(e.details.len(), 1, "{e}");
        assert!(e.details[0].line.is_some(), "{e}");
    }
    // Nesting within the limit is fine.
    let ok = format!(
        "{{\"openapi\": \"3.0.0\", \"paths\": {{}}, \"x\": {}{}}}",
        "[".repeat(60),
        "]".repeat(60)
    );
    assert!(import(&ok).is_ok());
    let ok_yaml = format!(
        "openapi: 3.0.0\npaths: {{}}\nx: {}{}\n",
        "[".repeat(60),
        "]".repeat(60)
    );
    assert!(import(&ok_yaml).is_ok());
}

#[test]
fn odd_yaml_values_do_not_break_the_import() {
    let doc = "openapi: 3.0.0\ninfo: {title: !custom T, version: .nan}\nx-bin: !!binary aGk=\nx-null-key: {~: 1, null: 2}\npaths:\n  /a:\n    get: {operationId: 12}\n";
    let api = import_ok(doc);
    assert_eq!(api.title.as_deref(), Some("T"));
    assert_eq!(api.version.as_deref(), Some(".nan"));
    assert_eq!(api.operations[0].id, "12");
    assert_eq!(api.document["x-bin"], "hi");
    assert_eq!(api.document["x-null-key"]["~"], 1);
}

#[test]
fn arbitrary_garbage_never_panics() {
    let samples = [
        "",
        "{",
        "}",
        "[",
        "{\"openapi\":",
        "\u{feff}{\"openapi\": \"3.0.0\", \"paths\": {}}",
        "openapi: [3",
        "? [a]\n: b\n",
        "&a [*a]",
        "*unknown",
        "%YAML 1.2\n---\nopenapi: 3.0.0\n",
        "openapi: 3.0.0\n---\nopenapi: 3.1.0\n",
        "\t",
        "openapi: 3.0.0\npaths:\n  /{}:\n    get: {}\n",
        "{\"openapi\": \"3.0.0\", \"paths\": {\"/\": {\"get\": {\"parameters\": 5}}}}",
        "{\"openapi\": \"3.0.0\", \"paths\": {\"/\": {\"$ref\": 5}}}",
        "{\"openapi\": \"3.0.0\", \"paths\": {\"/a\": {\"$ref\": \"#/paths/~1a\"}}}",
    ];
    for s in samples {
        let _ = import(s);
    }
    // A path item that refers to another one.
    let api = import_ok(
        r##"{"openapi": "3.1.0", "paths": {"/b": {"$ref": "#/components/pathItems/B"}},
            "components": {"pathItems": {"B": {"get": {"operationId": "b"}}}}}"##,
    );
    assert_eq!(api.operations[0].id, "b");
    assert_eq!(api.operations[0].url_template, "/b");
}

#[test]
fn big_hostile_documents_stay_fast() {
    // Many operations with one operationId, each referring into a large parameters section.
    let n = 5_000;
    let mut doc = String::from(r#"{"swagger": "2.0", "parameters": {"#);
    for i in 0..n {
        doc.push_str(&format!(
            r#""p{i}": {{"name": "id", "in": "path", "type": "integer", "description": "{i}"}},"#
        ));
    }
    doc.push_str(r#""last": {"name": "x", "in": "query"}}, "paths": {"#);
    for i in 0..n {
        let sep = if i + 1 == n { "" } else { "," };
        doc.push_str(&format!(
            r##""/r{i}/{{id}}": {{"get": {{"operationId": "same", "parameters": [{{"$ref": "#/parameters/p{}"}}]}}}}{sep}"##,
            n - 1 - i
        ));
    }
    doc.push_str("}}");
    let started = Instant::now();
    let api = import_ok(&doc);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(api.operations.len(), n);
    assert_eq!(api.operations[0].id, "same");
    assert_eq!(api.operations[n - 1].id, format!("same-{n}"));
    assert_eq!(api.operations[0].template_parameters[0].type_, "integer");
    assert_eq!(
        api.operations[0].template_parameters[0]
            .description
            .as_deref(),
        Some(format!("{}", n - 1).as_str())
    );

    // A path too long to be a URL template.
    let long = format!(
        r#"{{"openapi": "3.0.0", "paths": {{"/{}": {{"get": {{}}}}}}}}"#,
        "{a}/".repeat(400)
    );
    let e = import_err(&long);
    assert!(only_detail(&e).message.contains("longer than 1000"), "{e}");
}

#[test]
fn shared_references_cannot_make_the_import_explode() {
    // One path item with 2,000 referenced parameters, shared by 3,000 paths.
    let mut doc = String::from(
        r#"{"openapi": "3.1.0", "components": {"parameters": {"q": {"name": "q", "in": "query"}}, "pathItems": {"P": {"get": {"parameters": ["#,
    );
    let refs = vec![r##"{"$ref": "#/components/parameters/q"}"##; 2_000].join(",");
    doc.push_str(&refs);
    doc.push_str(r#"]}}}}, "paths": {"#);
    let paths: Vec<String> = (0..3_000)
        .map(|i| format!(r##""/p{i}": {{"$ref": "#/components/pathItems/P"}}"##))
        .collect();
    doc.push_str(&paths.join(","));
    doc.push_str("}}");
    let started = Instant::now();
    let e = import_err(&doc);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(only_detail(&e).target, "document");
    assert!(only_detail(&e).message.contains("too complex"), "{e}");
}

#[test]
fn long_values_are_clipped_in_messages() {
    let e = import_err(&format!(
        "openapi: '3.{}'\npaths: {{}}\n",
        "9".repeat(100_000)
    ));
    assert!(e.message.len() < 1_000, "{}", e.message.len());
    let key = "k".repeat(100_000);
    let e = import_err(&format!("{{\"{key}\": 1, \"{key}\": 2}}"));
    assert!(e.message.len() < 1_000, "{}", e.message.len());
}

#[test]
fn shared_long_texts_cannot_exhaust_memory() {
    // A 1 MB description in a path item that 2,000 paths share: 2 GB if copied each time.
    let doc = format!(
        r##"{{"openapi": "3.1.0", "components": {{"pathItems": {{"P": {{"get": {{"description": "{}"}}}}}}}}, "paths": {{{}}}}}"##,
        "d".repeat(1_000_000),
        (0..2_000)
            .map(|i| format!(r##""/p{i}": {{"$ref": "#/components/pathItems/P"}}"##))
            .collect::<Vec<_>>()
            .join(",")
    );
    let e = import_err(&doc);
    assert!(only_detail(&e).message.contains("too complex"), "{e}");
}
