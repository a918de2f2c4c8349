//! Property-based fuzzing of the API from its own OpenAPI document: thousands of
//! requests generated from each operation's parameters and body schemas — mostly
//! well-formed, often subtly wrong (wrong types, missing or unknown fields, hostile
//! strings, odd ids), as different people or nobody — checking that nothing answers
//! 5xx, every status is one the document declares, and every body matches the declared
//! schema. `RAPPORT_FUZZ_CASES` (default 3000) and `RAPPORT_FUZZ_SEED` vary the run; a
//! failure prints the seed and the request.

use crate::support::*;
use axum::http::Method;
use rapport_testkit::database::run_on_sqlite;
use serde_json::{Map, Value, json};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    "",
    " ",
    "acme",
    "acme.example",
    "stripe:cus_123",
    "pat@consultants.example",
    "Ünïcødé ✓",
    "../../etc/passwd",
    "'; DROP TABLE accounts; --",
    "%00",
    "a\u{0}b",
    "x@y",
    "not..a..domain",
    "billing",
    "support.ticket",
    "rapport",
    "2026-02-30",
    "9999-12-31T23:59:59Z",
    "null",
];

struct Doc<'a> {
    root: &'a Value,
}

impl<'a> Doc<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                self.resolve(&self.root["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    fn types(schema: &Value) -> Vec<String> {
        match &schema["type"] {
            Value::String(kind) => vec![kind.clone()],
            Value::Array(kinds) => kinds
                .iter()
                .filter_map(|kind| kind.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn junk(rng: &mut Rng) -> Value {
        match rng.below(6) {
            0 => Value::Null,
            1 => json!(rng.pick(&[-1i64, 0, 1, i64::MAX, i64::MIN])),
            2 => json!(rng.pick(STRINGS)),
            3 => json!([1, "two", null]),
            4 => json!({"unexpected": true}),
            _ => json!(1.5e300),
        }
    }

    fn generate(&self, schema: &'a Value, rng: &mut Rng, ids: &[i64], depth: u32) -> Value {
        if depth > 4 || rng.chance(6) {
            return Self::junk(rng);
        }
        let schema = self.resolve(schema);
        for combinator in ["oneOf", "anyOf"] {
            if let Some(options) = schema[combinator].as_array() {
                return self.generate(rng.pick(options), rng, ids, depth + 1);
            }
        }
        if let Some(values) = schema["enum"].as_array() {
            return rng.pick(values).clone();
        }
        let types = Self::types(schema);
        let kind = if types.is_empty() {
            "object".to_owned()
        } else {
            rng.pick(&types).clone()
        };
        match kind.as_str() {
            "null" => Value::Null,
            "boolean" => json!(rng.chance(50)),
            "integer" | "number" => {
                if rng.chance(70) {
                    json!(rng.pick(ids))
                } else {
                    json!(rng.pick(&[-1i64, 0, 366, 987_654, i64::MAX]))
                }
            }
            "string" => match schema["format"].as_str() {
                Some("date") if rng.chance(70) => json!("2027-03-31"),
                Some("date-time") if rng.chance(70) => json!("2026-06-01T00:00:00Z"),
                _ => json!(rng.pick(STRINGS)),
            },
            "array" => {
                let items = &schema["items"];
                Value::Array(
                    (0..rng.below(3))
                        .map(|_| self.generate(items, rng, ids, depth + 1))
                        .collect(),
                )
            }
            _ => {
                let mut object = Map::new();
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|names| names.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if let Some(properties) = schema["properties"].as_object() {
                    for (name, property) in properties {
                        let wanted = if required.contains(&name.as_str()) {
                            !rng.chance(5)
                        } else {
                            rng.chance(50)
                        };
                        if wanted {
                            object
                                .insert(name.clone(), self.generate(property, rng, ids, depth + 1));
                        }
                    }
                }
                if rng.chance(5) {
                    object.insert("surplus".into(), json!(1));
                }
                Value::Object(object)
            }
        }
    }

    /// Whether `value` fits `schema`; the first mismatch, with its JSON path.
    fn check(&self, schema: &'a Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(options) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            return if options
                .iter()
                .any(|option| self.check(option, value, at).is_ok())
            {
                Ok(())
            } else {
                Err(format!("{at}: {value} fits none of {options:?}"))
            };
        }
        if let Some(parts) = schema["allOf"].as_array() {
            for part in parts {
                self.check(part, value, at)?;
            }
        }
        if let Some(values) = schema["enum"].as_array()
            && !values.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {values:?}"));
        }
        let types = Self::types(schema);
        if !types.is_empty() {
            let fits = types.iter().any(|kind| match kind.as_str() {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "string" => value.is_string(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                _ => true,
            });
            if !fits {
                return Err(format!("{at}: {value} is not {types:?}"));
            }
        }
        if let Some(object) = value.as_object() {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    return Err(format!("{at}: required `{name}` is missing"));
                }
            }
            if let Some(properties) = schema["properties"].as_object() {
                for (name, field) in object {
                    match properties.get(name) {
                        Some(property) => self.check(property, field, &format!("{at}.{name}"))?,
                        None if schema["additionalProperties"] == json!(false) => {
                            return Err(format!("{at}: `{name}` is not declared"));
                        }
                        None => {}
                    }
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (index, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{at}[{index}]"))?;
            }
        }
        Ok(())
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn the_api_answers_every_generated_request_within_its_contract() {
    run_on_sqlite(|store| async move {
        let world = world(store).await;
        let document = serde_json::to_value(rapport_server::openapi()).unwrap();
        let doc = Doc { root: &document };
        let cases: usize = std::env::var("RAPPORT_FUZZ_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(3_000);
        let seed: u64 = std::env::var("RAPPORT_FUZZ_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0x5EED_CAFE);
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // The checker itself must be able to fail.
        let staff_view = json!({"$ref": "#/components/schemas/StaffView"});
        let me = world.as_("mia", Method::GET, "/api/v1/me", None).await.1;
        doc.check(&staff_view, &me, "$").unwrap();
        let mut broken = me.clone();
        broken["level"] = json!("intern");
        assert!(doc.check(&staff_view, &broken, "$").is_err());
        broken = me.clone();
        broken.as_object_mut().unwrap().remove("email");
        assert!(doc.check(&staff_view, &broken, "$").is_err());
        let mut ids: Vec<i64> = world.accounts.values().map(|id| id.0).collect();
        ids.extend(world.staff.values().map(|staff| staff.id.0));
        ids.extend(world.tasks.values().map(|id| id.0));
        ids.push(world.unmatched.0);
        let operations: Vec<(String, String, Value)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .iter()
                    .map(|(method, operation)| (path.clone(), method.clone(), operation.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let people = ["adam", "vera", "dan", "mia", "ava"];
        let mut tokens = world.tokens.clone();
        let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
        for case in 0..cases {
            let (path, method, operation) = rng.pick(&operations).clone();
            let mut uri = path.clone();
            let mut query = Vec::new();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                let value = scalar(&doc.generate(&parameter["schema"], &mut rng, &ids, 0));
                match parameter["in"].as_str() {
                    Some("path") => {
                        uri = uri.replace(&format!("{{{name}}}"), &encode(&value));
                    }
                    _ if rng.chance(50) => query.push(format!("{name}={}", encode(&value))),
                    _ => {}
                }
            }
            if !query.is_empty() {
                uri = format!("{uri}?{}", query.join("&"));
            }
            let body = operation["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|_| {
                    doc.generate(
                        &operation["requestBody"]["content"]["application/json"]["schema"],
                        &mut rng,
                        &ids,
                        0,
                    )
                });
            let person = *rng.pick(&people);
            let token = match rng.below(12) {
                0 => None,
                1 => Some("rpt_forged".to_owned()),
                _ => Some(tokens[person].clone()),
            };
            let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, answer) = world
                .call(http_method, &uri, token.as_deref(), body.clone())
                .await;
            let context = format!(
                "case {case} (RAPPORT_FUZZ_SEED={seed}): {} {uri}\n  body: {body:?}\n  answer: {status} {answer}",
                method.to_uppercase()
            );
            assert!(!status.is_server_error(), "a 5xx: {context}");
            *by_status.entry(status.as_u16()).or_default() += 1;
            // The fuzzer may revoke its own tokens or deactivate the person: give them
            // back, so the rest of the run is not all 401s.
            if status == axum::http::StatusCode::UNAUTHORIZED
                && token.as_deref() == Some(tokens[person].as_str())
            {
                let id = world.id(person);
                if !world.store.staff(id).await.unwrap().active {
                    world.store.reactivate_staff(id, chrono::Utc::now()).await.unwrap();
                }
                let fresh = world
                    .store
                    .create_api_token(id, "fuzz", None, chrono::Utc::now())
                    .await
                    .unwrap();
                tokens.insert(person, fresh.secret);
            }
            let declared = &operation["responses"][status.as_str()];
            assert!(declared.is_object(), "an undeclared status: {context}");
            if let Some(content) = declared["content"].as_object()
                && let Some((_, media)) = content.iter().next()
                && let Err(mismatch) = doc.check(&media["schema"], &answer, "$")
            {
                panic!("the body does not match its schema ({mismatch}): {context}");
            }
        }
        // The run exercised both success and refusal, not just one of them.
        assert!(by_status.keys().any(|status| *status < 300), "{by_status:?}");
        assert!(by_status.contains_key(&404) && by_status.contains_key(&422), "{by_status:?}");
        println!("fuzzed {cases} requests: {by_status:?}");
    })
    .await;
}
