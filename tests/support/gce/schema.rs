//! The Compute v1 discovery document subset (`tests/data/gcp/compute-v1.json`, made by
//! `scripts/gcp-discovery-subset.py`) as a router and a validator.
//!
//! Routing follows each method's `flatPath`. Validation is generic over the document: path
//! parameters against their anchored `pattern`, query parameters known (the method's or the
//! top-level ones) and typed, bodies against the `$ref`'d schema (unknown fields, types with
//! int64/uint64 as JSON strings, formats, enums, patterns, arrays, `additionalProperties`, and
//! the fields whose `annotations.required` names the method). Nothing here knows a field by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;
use serde_json::{Map, Value};

/// The subset, embedded so that the fake cannot run against a stale copy.
const DOCUMENT: &str = include_str!("../../data/gcp/compute-v1.json");

/// One problem with a request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `resource.disks[0].type`, `query.maxResults`, `path.zone`, `response.status`.
    pub field: String,
    /// Google's wording where we know it.
    pub message: String,
}

impl Problem {
    fn new(field: &str, message: String) -> Problem {
        Problem {
            field: field.to_string(),
            message,
        }
    }
}

/// One API method of the document.
#[derive(Debug)]
pub struct Method {
    /// `compute.instances.insert`.
    pub id: String,
    /// `GET`, `POST`, `DELETE`.
    pub http_method: String,
    /// The OAuth scopes of which a token needs one.
    pub scopes: Vec<String>,
    /// `flatPath` split at `/`.
    segments: Vec<Segment>,
    parameters: Map<String, Value>,
    request: Option<String>,
    response: Option<String>,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Parameter(String),
}

/// What a path and verb lead to.
pub enum Route<'a> {
    /// A method, with its path parameters decoded.
    Method(&'a Method, BTreeMap<String, String>),
    /// No method has that path and verb.
    NotFound,
}

/// The parsed document with every pattern compiled.
pub struct Discovery {
    /// The service path, `compute/v1/`.
    pub service_path: String,
    methods: Vec<Method>,
    schemas: Map<String, Value>,
    global_parameters: Map<String, Value>,
    patterns: HashMap<String, Regex>,
    datetime: Regex,
    duration: Regex,
}

impl Discovery {
    /// The embedded document, parsed once for every fake of the process.
    pub fn get() -> &'static Discovery {
        static DISCOVERY: OnceLock<Discovery> = OnceLock::new();
        DISCOVERY.get_or_init(Discovery::load)
    }

    /// Parses the embedded document. It is our own checked-in data, so a broken one panics.
    fn load() -> Discovery {
        let document: Value = serde_json::from_str(DOCUMENT).expect("tests/data/gcp/compute-v1.json is JSON");
        let text = |key: &str| document[key].as_str().unwrap_or_default().to_string();
        let object = |value: &Value| value.as_object().cloned().unwrap_or_default();
        let mut methods = Vec::new();
        for resource in object(&document["resources"]).values() {
            for method in object(&resource["methods"]).values() {
                let field = |key: &str| method[key].as_str().unwrap_or_default().to_string();
                let segments = field("flatPath")
                    .split('/')
                    .map(
                        |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(name) => Segment::Parameter(name.to_string()),
                            None => Segment::Literal(segment.to_string()),
                        },
                    )
                    .collect();
                let schema_ref = |key: &str| method[key]["$ref"].as_str().map(str::to_string);
                methods.push(Method {
                    id: field("id"),
                    http_method: field("httpMethod"),
                    scopes: method["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    segments,
                    parameters: object(&method["parameters"]),
                    request: schema_ref("request"),
                    response: schema_ref("response"),
                });
            }
        }
        let mut patterns = HashMap::new();
        collect_patterns(&document, &mut patterns);
        Discovery {
            service_path: text("servicePath"),
            methods,
            schemas: object(&document["schemas"]),
            global_parameters: object(&document["parameters"]),
            patterns,
            datetime: Regex::new(
                r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
            )
            .expect("a valid regex"),
            duration: Regex::new(r"^-?[0-9]+(\.[0-9]+)?s$").expect("a valid regex"),
        }
    }

    /// The method serving `http_method` on `path` (relative to the service path, still
    /// percent-encoded).
    pub fn route(&self, http_method: &str, path: &str) -> Route<'_> {
        let parts: Vec<&str> = path.split('/').collect();
        for method in &self.methods {
            if method.http_method != http_method || method.segments.len() != parts.len() {
                continue;
            }
            let mut params = BTreeMap::new();
            let matched = method.segments.iter().zip(&parts).all(|(segment, part)| match segment {
                Segment::Literal(literal) => literal == part,
                Segment::Parameter(name) => match super::http::percent_decode(part, false) {
                    Ok(value) if !value.is_empty() => {
                        params.insert(name.clone(), value);
                        true
                    }
                    _ => false,
                },
            });
            if matched {
                return Route::Method(method, params);
            }
        }
        Route::NotFound
    }

    /// Every problem of a request: path parameters, query parameters, the body (parsed and
    /// returned when the method takes one).
    pub fn check_request(
        &self,
        method: &Method,
        path_params: &BTreeMap<String, String>,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Vec<Problem>, Value) {
        let mut problems = Vec::new();
        for (name, value) in path_params {
            if let Some(spec) = method.parameters.get(name) {
                self.check_parameter(&format!("path.{name}"), name, spec, value, &mut problems);
            }
        }
        self.check_query(method, query, &mut problems);
        let body = self.check_body(method, content_type, body, &mut problems);
        (problems, body)
    }

    /// Every problem of a response body of `method` (required fields are a request matter).
    pub fn check_response(&self, method: &Method, value: &Value) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(name) = &method.response {
            self.check_value(&ref_to(name), value, "response", None, &mut problems);
        }
        problems
    }

    fn check_query(&self, method: &Method, query: &[(String, String)], problems: &mut Vec<Problem>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (name, value) in query {
            let spec = method
                .parameters
                .get(name)
                .filter(|spec| spec["location"] == "query")
                .or_else(|| self.global_parameters.get(name));
            let Some(spec) = spec else {
                problems.push(Problem::new(
                    &format!("query.{name}"),
                    format!(
                        "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. \
                         Field '{name}' could not be found in request message."
                    ),
                ));
                continue;
            };
            let count = seen.entry(name).or_default();
            *count += 1;
            if *count == 2 && spec["repeated"] != true {
                problems.push(Problem::new(
                    &format!("query.{name}"),
                    format!("Invalid value for field '{name}': it is given more than once and is not repeated."),
                ));
            }
            self.check_parameter(&format!("query.{name}"), name, spec, value, problems);
        }
        for (name, spec) in &method.parameters {
            if spec["location"] == "query" && spec["required"] == true && !seen.contains_key(name.as_str()) {
                problems.push(Problem::new(
                    &format!("query.{name}"),
                    format!("Required parameter '{name}' not specified."),
                ));
            }
        }
    }

    /// One path or query parameter, given as text.
    fn check_parameter(&self, at: &str, name: &str, spec: &Value, value: &str, problems: &mut Vec<Problem>) {
        let invalid = |why: String| Problem::new(at, format!("Invalid value for field '{name}': {value:?}. {why}"));
        match spec["type"].as_str().unwrap_or("string") {
            "boolean" => {
                if value != "true" && value != "false" {
                    problems.push(invalid("Expected true or false.".into()));
                }
            }
            "integer" => match value.parse::<i64>() {
                Ok(number) => {
                    if let Some(why) = integer_range_problem(spec, number) {
                        problems.push(invalid(why));
                    }
                }
                Err(_) => problems.push(invalid("Expected an integer.".into())),
            },
            "number" => {
                if value.parse::<f64>().is_err() {
                    problems.push(invalid("Expected a number.".into()));
                }
            }
            _ => {
                if let Some(why) = self.string_problem(spec, value) {
                    problems.push(invalid(why));
                }
            }
        }
    }

    fn check_body(
        &self,
        method: &Method,
        content_type: Option<&str>,
        body: &[u8],
        problems: &mut Vec<Problem>,
    ) -> Value {
        let Some(request) = &method.request else {
            if !body.is_empty() {
                problems.push(Problem::new(
                    "resource",
                    format!("{} takes no request body; {} bytes were sent.", method.id, body.len()),
                ));
            }
            return Value::Null;
        };
        if body.is_empty() {
            problems.push(Problem::new(
                "resource",
                "Required field 'resource' not specified".into(),
            ));
            return Value::Null;
        }
        let is_json = content_type.is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/json"));
        if !is_json {
            problems.push(Problem::new(
                "resource",
                format!("Invalid Content-Type {content_type:?} for a JSON request body; expected application/json."),
            ));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => {
                self.check_value(&ref_to(request), &value, "resource", Some(&method.id), problems);
                value
            }
            Err(e) => {
                problems.push(Problem::new("resource", format!("Invalid JSON payload received. {e}.")));
                Value::Null
            }
        }
    }

    /// Checks `value` against `schema` at the field path `at`; `required_for` is the method id
    /// whose `annotations.required` fields must be present (requests only).
    fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        required_for: Option<&str>,
        problems: &mut Vec<Problem>,
    ) {
        if let Some(name) = schema["$ref"].as_str() {
            match self.schemas.get(name) {
                Some(target) => self.check_value(target, value, at, required_for, problems),
                None => problems.push(Problem::new(at, format!("the document has no schema {name}"))),
            }
            return;
        }
        // proto3 JSON: null is the same as an absent field.
        if value.is_null() {
            return;
        }
        let invalid = |why: &str| Problem::new(at, format!("Invalid value for field '{at}': {value}. {why}"));
        let kind = schema["type"]
            .as_str()
            .unwrap_or(if schema.get("properties").is_some() {
                "object"
            } else {
                "any"
            });
        match kind {
            "object" => {
                let Some(object) = value.as_object() else {
                    problems.push(invalid("Expected an object."));
                    return;
                };
                self.check_object(schema, object, at, required_for, problems);
            }
            "array" => {
                let Some(items) = value.as_array() else {
                    problems.push(invalid("Expected an array."));
                    return;
                };
                for (i, item) in items.iter().enumerate() {
                    self.check_value(&schema["items"], item, &format!("{at}[{i}]"), required_for, problems);
                }
            }
            "string" => match value.as_str() {
                Some(text) => {
                    if let Some(why) = self.string_problem(schema, text) {
                        problems.push(invalid(&why));
                    }
                }
                None => problems.push(invalid(&format!("Expected a string{}.", format_note(schema)))),
            },
            "integer" => match value.as_i64() {
                Some(number) => {
                    if let Some(why) = integer_range_problem(schema, number) {
                        problems.push(invalid(&why));
                    }
                }
                None => problems.push(invalid(&format!("Expected an integer{}.", format_note(schema)))),
            },
            "number" if !value.is_number() => problems.push(invalid("Expected a number.")),
            "boolean" if !value.is_boolean() => problems.push(invalid("Expected a boolean.")),
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &Map<String, Value>,
        at: &str,
        required_for: Option<&str>,
        problems: &mut Vec<Problem>,
    ) {
        let properties = schema["properties"].as_object();
        for (name, field) in object {
            let path = format!("{at}.{name}");
            if let Some(spec) = properties.and_then(|p| p.get(name)) {
                self.check_value(spec, field, &path, required_for, problems);
            } else if let Some(spec) = schema.get("additionalProperties") {
                self.check_value(spec, field, &path, required_for, problems);
            } else {
                problems.push(Problem::new(
                    &path,
                    format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."),
                ));
            }
        }
        let Some(method_id) = required_for else { return };
        for (name, spec) in properties.into_iter().flatten() {
            let required = spec["annotations"]["required"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id == method_id));
            if required && object.get(name).is_none_or(Value::is_null) {
                problems.push(Problem::new(
                    &format!("{at}.{name}"),
                    format!("Required field '{at}.{name}' not specified"),
                ));
            }
        }
    }

    /// Why a string does not fit its schema (format, enum, pattern), if it does not.
    fn string_problem(&self, schema: &Value, text: &str) -> Option<String> {
        let format = schema["format"].as_str().unwrap_or_default();
        let format_ok = match format {
            "int64" => text.parse::<i64>().is_ok(),
            "uint64" => text.parse::<u64>().is_ok(),
            "int32" => text.parse::<i32>().is_ok(),
            "uint32" => text.parse::<u32>().is_ok(),
            "byte" => is_base64(text),
            "google-datetime" => self.datetime.is_match(text),
            "google-duration" => self.duration.is_match(text),
            _ => true,
        };
        if !format_ok {
            return Some(format!("Expected a string in the {format} format."));
        }
        if let Some(choices) = schema["enum"].as_array() {
            if !choices.iter().any(|choice| choice == text) {
                let names: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
                return Some(format!("Expected one of: {}.", names.join(", ")));
            }
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            let regex = self.patterns.get(pattern)?;
            if !regex.is_match(text) {
                return Some(format!("Must be a match of regex '{pattern}'."));
            }
        }
        None
    }
}

fn ref_to(name: &str) -> Value {
    serde_json::json!({ "$ref": name })
}

fn format_note(schema: &Value) -> String {
    match schema["format"].as_str() {
        Some(format @ ("int64" | "uint64")) => format!(" ({format} values are JSON strings, e.g. \"10\")"),
        Some(format) => format!(" ({format})"),
        None => String::new(),
    }
}

/// Why an integer is out of its format's or the schema's range, if it is.
fn integer_range_problem(schema: &Value, number: i64) -> Option<String> {
    let (format_min, format_max) = match schema["format"].as_str() {
        Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
        Some("uint32") => (0, i64::from(u32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    // Discovery writes minimum and maximum as strings.
    let bound = |key: &str| schema[key].as_str().and_then(|b| b.parse::<i64>().ok());
    let min = bound("minimum").map_or(format_min, |b| b.max(format_min));
    let max = bound("maximum").map_or(format_max, |b| b.min(format_max));
    (number < min || number > max).then(|| format!("Expected an integer between {min} and {max}."))
}

fn is_base64(text: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .any(|engine| engine.decode(text).is_ok())
}

/// Compiles every `pattern` of the document, anchored (discovery patterns match the whole value).
fn collect_patterns(node: &Value, patterns: &mut HashMap<String, Regex>) {
    match node {
        Value::Object(object) => {
            if let Some(Value::String(pattern)) = object.get("pattern") {
                let regex = Regex::new(&format!("^(?:{pattern})$"))
                    .unwrap_or_else(|e| panic!("the discovery pattern {pattern:?} does not compile: {e}"));
                patterns.insert(pattern.clone(), regex);
            }
            for value in object.values() {
                collect_patterns(value, patterns);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_patterns(item, patterns);
            }
        }
        _ => {}
    }
}
