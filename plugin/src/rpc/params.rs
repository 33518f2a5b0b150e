//! A call's `params` decoded as gorilla/rpc's json2 codec does for InfraKit's Go plugins: missing
//! or `null` params leave the argument at its zero value (`Default`); otherwise the params are
//! decoded as the argument, and when that fails, as an array whose first element is the argument
//! (further elements ignored, an empty array leaving the zero value). Decoding follows Go's rules
//! (`go_json`). A failure is gorilla's answer: code -32600 (invalid request), the params as `data`.

use jsonrpsee::types::ErrorObjectOwned;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;

use super::go_json;

/// gorilla/rpc json2's `E_INVALID_REQ`, which it answers for params it cannot decode.
const INVALID_REQUEST: i32 = -32600;

/// Decodes the params of a call to `method` (`raw` as sent, `None` when absent).
pub(crate) fn decode<P: DeserializeOwned + Default>(method: &str, raw: Option<&str>) -> Result<P, ErrorObjectOwned> {
    let Some(raw) = raw else {
        return Ok(P::default());
    };
    let invalid = |message: String| {
        let data = RawValue::from_string(raw.to_owned()).ok();
        ErrorObjectOwned::owned(INVALID_REQUEST, format!("invalid params for {method}: {message}"), data)
    };
    let value: Value = serde_json::from_str(raw).map_err(|err| invalid(err.to_string()))?;
    match value {
        Value::Null => Ok(P::default()),
        Value::Array(items) => {
            let first = items.first().cloned();
            match go_json::from_value(Value::Array(items)) {
                Ok(params) => Ok(params),
                Err(_) => match first {
                    None => Ok(P::default()),
                    Some(first) => go_json::from_value(first).map_err(|err| invalid(err.to_string())),
                },
            }
        }
        value => go_json::from_value(value).map_err(|err| invalid(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::decode;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Args {
        #[serde(rename = "Name")]
        name: String,
    }

    fn args(raw: Option<&str>) -> Result<Args, jsonrpsee::types::ErrorObjectOwned> {
        decode("Test.Args", raw)
    }

    fn named(name: &str) -> Args {
        Args { name: name.to_owned() }
    }

    #[test]
    fn an_object_a_one_element_array_null_and_nothing_are_accepted() {
        assert_eq!(args(Some(r#"{"Name":"a"}"#)).unwrap(), named("a"));
        assert_eq!(args(Some(r#"[{"name":"b"}]"#)).unwrap(), named("b"));
        assert_eq!(args(Some(r#"[{"Name":"c"}, {"Name":"ignored"}]"#)).unwrap(), named("c"));
        assert_eq!(args(Some("[]")).unwrap(), Args::default());
        assert_eq!(args(Some("null")).unwrap(), Args::default());
        assert_eq!(args(None).unwrap(), Args::default());
    }

    #[test]
    fn an_argument_that_is_an_array_takes_the_whole_array() {
        let list: Vec<String> = decode("Test.List", Some(r#"["a","b"]"#)).unwrap();
        assert_eq!(list, ["a", "b"]);
    }

    #[test]
    fn wrong_types_are_gorillas_invalid_request_with_the_params_as_data() {
        let err = args(Some(r#"{"Name":7}"#)).unwrap_err();
        assert_eq!(err.code(), -32600);
        assert!(
            err.message()
                .starts_with("invalid params for Test.Args: Name: invalid type: integer `7`"),
            "{}",
            err.message()
        );
        assert_eq!(err.data().map(|data| data.get()), Some(r#"{"Name":7}"#));

        let err = args(Some(r#"[{"Name":[]}]"#)).unwrap_err();
        assert!(
            err.message().contains("Name: invalid type: sequence"),
            "{}",
            err.message()
        );
        let err = args(Some("5")).unwrap_err();
        assert!(
            err.message()
                .contains("invalid type: integer `5`, expected struct Args"),
            "{}",
            err.message()
        );
    }
}
