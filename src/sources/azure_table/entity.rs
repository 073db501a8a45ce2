//! One Table storage entity with every property's EDM type, as a snapshot stores it (one JSON
//! line per entity) and as the service's JSON carries it: read from an answer in
//! `odata=minimalmetadata` (a `Prop@odata.type` annotation where JSON cannot say the type:
//! Int64 as a string, DateTime, Guid, Binary, and Doubles that are whole or not numbers), and
//! written back with every non-String type annotated, so each value returns as it was.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An entity: its keys, the service's Timestamp when read (never written back: the service
/// sets it), and its properties by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "PartitionKey")]
    pub partition_key: String,
    #[serde(rename = "RowKey")]
    pub row_key: String,
    #[serde(rename = "Timestamp", default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(rename = "Properties")]
    pub properties: BTreeMap<String, Property>,
}

/// A property's value with its EDM type, stored as `{"type":"Int64","value":"123"}`: Int64 as
/// a string (as OData carries it, beyond JSON's safe integers), a Double that is not a number
/// as "NaN", "Infinity" or "-Infinity", Binary in base64, DateTime and Guid as the service
/// wrote them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum Property {
    String(String),
    Int32(i32),
    Int64(#[serde(with = "int64_text")] i64),
    Double(#[serde(with = "double_text")] f64),
    Boolean(bool),
    DateTime(String),
    Guid(String),
    Binary(String),
}

impl Property {
    /// Its EDM type's name, as `@odata.type` writes it.
    pub fn edm_type(&self) -> &'static str {
        match self {
            Property::String(_) => "Edm.String",
            Property::Int32(_) => "Edm.Int32",
            Property::Int64(_) => "Edm.Int64",
            Property::Double(_) => "Edm.Double",
            Property::Boolean(_) => "Edm.Boolean",
            Property::DateTime(_) => "Edm.DateTime",
            Property::Guid(_) => "Edm.Guid",
            Property::Binary(_) => "Edm.Binary",
        }
    }

    /// Its value as the service's JSON writes it.
    fn to_json(&self) -> Value {
        match self {
            Property::String(s)
            | Property::DateTime(s)
            | Property::Guid(s)
            | Property::Binary(s) => Value::String(s.clone()),
            Property::Int32(n) => Value::from(*n),
            Property::Int64(n) => Value::String(n.to_string()),
            Property::Double(d) => double_to_json(*d),
            Property::Boolean(b) => Value::Bool(*b),
        }
    }

    /// The property `value` annotated `edm_type` (`None` when unannotated: JSON's own type).
    fn from_json(name: &str, value: &Value, edm_type: Option<&str>) -> anyhow::Result<Property> {
        let wrong = || {
            format!(
                "property {name} is not a valid {}",
                edm_type.unwrap_or("value")
            )
        };
        Ok(match (edm_type, value) {
            (None | Some("Edm.String"), Value::String(s)) => Property::String(s.clone()),
            (None | Some("Edm.Boolean"), Value::Bool(b)) => Property::Boolean(*b),
            (Some("Edm.Int32"), Value::Number(n)) => Property::Int32(
                n.as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .with_context(wrong)?,
            ),
            (None, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                    Some(n) => Property::Int32(n),
                    // Not an Int32, and the service annotates Int64: a whole Double.
                    None => Property::Double(n.as_f64().with_context(wrong)?),
                }
            }
            (None | Some("Edm.Double"), Value::Number(n)) => {
                Property::Double(n.as_f64().with_context(wrong)?)
            }
            (Some("Edm.Double"), Value::String(s)) => {
                Property::Double(double_from_text(s).with_context(wrong)?)
            }
            (Some("Edm.Int64"), Value::String(s)) => {
                Property::Int64(s.parse().ok().with_context(wrong)?)
            }
            (Some("Edm.Int64"), Value::Number(n)) => {
                Property::Int64(n.as_i64().with_context(wrong)?)
            }
            (Some("Edm.DateTime"), Value::String(s)) => Property::DateTime(s.clone()),
            (Some("Edm.Guid"), Value::String(s)) => Property::Guid(s.clone()),
            (Some("Edm.Binary"), Value::String(s)) => Property::Binary(s.clone()),
            (Some(other), _) => {
                bail!("property {name} has type {other}, which Tidemark does not know")
            }
            (None, _) => bail!("property {name} holds {value}, which is no Table storage value"),
        })
    }
}

/// A Double as the service's JSON writes it: a number (with a fraction, `1.0`, so it is never
/// taken for an Int32), or the string naming a value that is not one.
fn double_to_json(d: f64) -> Value {
    if d.is_finite() {
        serde_json::Number::from_f64(d)
            .map(Value::Number)
            .expect("finite")
    } else {
        Value::String(double_text(d).to_owned())
    }
}

fn double_text(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn double_from_text(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" | "INF" => Some(f64::INFINITY),
        "-Infinity" | "-INF" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Int64 as decimal text in a snapshot.
mod int64_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub fn deserialize<'d, D: Deserializer<'d>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A Double in a snapshot: a JSON number, or "NaN", "Infinity", "-Infinity".
mod double_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(d: &f64, s: S) -> Result<S::Ok, S::Error> {
        super::double_to_json(*d).serialize(s)
    }

    pub fn deserialize<'d, D: Deserializer<'d>>(d: D) -> Result<f64, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| serde::de::Error::custom("not a double")),
            serde_json::Value::String(s) => super::double_from_text(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a double"))),
            other => Err(serde::de::Error::custom(format!("{other} is not a double"))),
        }
    }
}

impl Entity {
    /// An entity as the service's JSON answer holds it (`odata.*` entries left out).
    pub fn from_service(object: &Map<String, Value>) -> anyhow::Result<Entity> {
        let text = |key: &str| -> anyhow::Result<String> {
            match object.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => bail!("an entity of the answer has no {key}"),
            }
        };
        let partition_key = text("PartitionKey")?;
        let row_key = text("RowKey")?;
        let timestamp = object
            .get("Timestamp")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut properties = BTreeMap::new();
        for (name, value) in object {
            if name.starts_with("odata.")
                || name.contains('@')
                || matches!(name.as_str(), "PartitionKey" | "RowKey" | "Timestamp")
            {
                continue;
            }
            let annotation = object
                .get(&format!("{name}@odata.type"))
                .and_then(Value::as_str);
            let property = Property::from_json(name, value, annotation).with_context(|| {
                format!("entity PartitionKey {partition_key:?} RowKey {row_key:?}")
            })?;
            properties.insert(name.clone(), property);
        }
        Ok(Entity {
            partition_key,
            row_key,
            timestamp,
            properties,
        })
    }

    /// The JSON an insert, merge or replace sends: keys, and each property with its type
    /// annotated unless String, Boolean or Int32 (which JSON says itself).
    pub fn to_service_json(&self) -> Vec<u8> {
        let mut object = Map::with_capacity(2 + 2 * self.properties.len());
        object.insert(
            "PartitionKey".into(),
            Value::String(self.partition_key.clone()),
        );
        object.insert("RowKey".into(), Value::String(self.row_key.clone()));
        for (name, property) in &self.properties {
            if !matches!(
                property,
                Property::String(_) | Property::Boolean(_) | Property::Int32(_)
            ) {
                object.insert(
                    format!("{name}@odata.type"),
                    Value::String(property.edm_type().to_owned()),
                );
            }
            object.insert(name.clone(), property.to_json());
        }
        serde_json::to_vec(&object).expect("a JSON map serializes")
    }

    /// Its keys, for reports.
    pub fn keys(&self) -> (&str, &str) {
        (&self.partition_key, &self.row_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Entity {
        let value: Value = serde_json::from_str(json).unwrap();
        Entity::from_service(value.as_object().unwrap()).unwrap()
    }

    #[test]
    fn every_edm_type_is_read_as_the_service_annotates_it() {
        let entity = read(
            r#"{"odata.etag":"W/\"x\"","PartitionKey":"p","RowKey":"r",
            "Timestamp@odata.type":"Edm.DateTime","Timestamp":"2024-01-02T03:04:05.1234567Z",
            "S":"text","I":-7,"L@odata.type":"Edm.Int64","L":"9223372036854775807",
            "D":1.5,"W@odata.type":"Edm.Double","W":2.0,"N@odata.type":"Edm.Double","N":"NaN",
            "B":true,"T@odata.type":"Edm.DateTime","T":"2001-02-03T04:05:06Z",
            "G@odata.type":"Edm.Guid","G":"c9da6455-213d-42c9-9a79-3e9149a57833",
            "X@odata.type":"Edm.Binary","X":"AAEC"}"#,
        );
        assert_eq!(
            entity.timestamp.as_deref(),
            Some("2024-01-02T03:04:05.1234567Z")
        );
        let p = &entity.properties;
        assert_eq!(p["S"], Property::String("text".into()));
        assert_eq!(p["I"], Property::Int32(-7));
        assert_eq!(p["L"], Property::Int64(i64::MAX));
        assert_eq!(p["D"], Property::Double(1.5));
        assert_eq!(p["W"], Property::Double(2.0));
        assert!(matches!(p["N"], Property::Double(d) if d.is_nan()));
        assert_eq!(p["B"], Property::Boolean(true));
        assert_eq!(p["T"], Property::DateTime("2001-02-03T04:05:06Z".into()));
        assert_eq!(
            p["G"],
            Property::Guid("c9da6455-213d-42c9-9a79-3e9149a57833".into())
        );
        assert_eq!(p["X"], Property::Binary("AAEC".into()));
        assert_eq!(p.len(), 10);
    }

    #[test]
    fn a_snapshot_line_and_a_request_keep_every_type() {
        let entity = read(
            r#"{"PartitionKey":"p","RowKey":"r","L@odata.type":"Edm.Int64","L":"-5",
            "W@odata.type":"Edm.Double","W":3.0,"I":"Infinity","N@odata.type":"Edm.Double",
            "N":"-Infinity","Z@odata.type":"Edm.Double","Z":-0.0}"#,
        );
        let line = serde_json::to_string(&entity).unwrap();
        assert!(
            line.contains(r#""L":{"type":"Int64","value":"-5"}"#),
            "{line}"
        );
        assert!(
            line.contains(r#""W":{"type":"Double","value":3.0}"#),
            "{line}"
        );
        assert!(
            line.contains(r#""Z":{"type":"Double","value":-0.0}"#),
            "{line}"
        );
        let back: Entity = serde_json::from_str(&line).unwrap();
        assert_eq!(back, entity);
        let request: Value = serde_json::from_slice(&entity.to_service_json()).unwrap();
        assert_eq!(request["W"].to_string(), "3.0");
        assert_eq!(request["W@odata.type"], "Edm.Double");
        assert_eq!(request["L"], "-5");
        assert_eq!(request["N"], "-Infinity");
        assert_eq!(request["I"], "Infinity");
        assert!(request.get("I@odata.type").is_none());
        // Read back as the service would answer it: the same entity.
        assert_eq!(
            Entity::from_service(request.as_object().unwrap()).unwrap(),
            entity
        );
    }
}
