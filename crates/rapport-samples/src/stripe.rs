//! A fake Stripe API on loopback: `GET /v1/events` as Stripe serves it (newest first,
//! `created[gte]`, `starting_after`, `limit`, `types[]`, `has_more`, bearer auth), over
//! events built from Stripe's own example objects (`tests/fixtures/stripe`), with
//! one-shot faults (429 with Retry-After, 500).

use crate::upstream::{Reply, Upstream, has_header};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const OBJECTS: &str = include_str!("../../../tests/fixtures/stripe/objects.json");

/// Stripe's example object for `resource` (`invoice`, `subscription`, `customer`,
/// `charge`, `event`).
pub fn fixture(resource: &str) -> Value {
    let objects: Value = serde_json::from_str(OBJECTS).expect("the Stripe fixture is JSON");
    objects["resources"][resource].clone()
}

/// A paid invoice of `customer` for `amount` cents (USD).
pub fn invoice(id: &str, customer: &str, number: &str, amount: i64, email: Option<&str>) -> Value {
    let mut invoice = fixture("invoice");
    invoice["id"] = json!(id);
    invoice["customer"] = json!(customer);
    invoice["number"] = json!(number);
    invoice["amount_due"] = json!(amount);
    invoice["amount_paid"] = json!(amount);
    invoice["amount_remaining"] = json!(0);
    invoice["status"] = json!("paid");
    invoice["customer_email"] = json!(email);
    invoice
}

/// A subscription of `customer` to one monthly price of `unit_amount` cents.
pub fn subscription(id: &str, customer: &str, plan: &str, unit_amount: i64) -> Value {
    let mut subscription = fixture("subscription");
    subscription["id"] = json!(id);
    subscription["customer"] = json!(customer);
    let price = &mut subscription["items"]["data"][0]["price"];
    price["nickname"] = json!(plan);
    price["unit_amount"] = json!(unit_amount);
    subscription
}

/// A charge of `customer` for `amount`, `refunded` of it refunded.
pub fn refunded_charge(id: &str, customer: &str, amount: i64, refunded: i64) -> Value {
    let mut charge = fixture("charge");
    charge["id"] = json!(id);
    charge["customer"] = json!(customer);
    charge["amount"] = json!(amount);
    charge["amount_refunded"] = json!(refunded);
    charge["refunded"] = json!(refunded >= amount);
    charge
}

/// What the fake serves; change it between syncs.
#[derive(Debug, Default)]
pub struct StripeState {
    /// Events, in the order they were created.
    pub events: Vec<Value>,
    /// Served instead of the next requests' pages, in order.
    pub faults: VecDeque<Reply>,
}

/// A running fake Stripe.
#[derive(Debug)]
pub struct FakeStripe {
    /// The HTTP server.
    pub upstream: Upstream,
    /// Its events and faults.
    pub state: Arc<Mutex<StripeState>>,
    /// The API key it accepts.
    pub api_key: String,
}

impl FakeStripe {
    /// Starts a fake Stripe that accepts `api_key`.
    pub async fn start(api_key: &str) -> FakeStripe {
        let state = Arc::new(Mutex::new(StripeState::default()));
        let served = state.clone();
        let expected = format!("Bearer {api_key}");
        let upstream = Upstream::start_with_heads(move |head, path| {
            let mut state = served.lock().expect("stripe state");
            if let Some(fault) = state.faults.pop_front() {
                return fault;
            }
            if !has_header(head, "authorization", &expected) {
                return Reply::status(
                    401,
                    r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}"#,
                );
            }
            list_events(&state.events, path)
        })
        .await;
        FakeStripe {
            upstream,
            state,
            api_key: api_key.to_owned(),
        }
    }

    /// Adds an event of `kind` carrying `object`, created at `created` (Unix seconds);
    /// returns its id.
    pub fn push(&self, kind: &str, created: i64, object: Value, previous: Option<Value>) -> String {
        let mut state = self.state.lock().expect("stripe state");
        let id = format!("evt_{:06}", state.events.len() + 1);
        let mut event = fixture("event");
        event["id"] = json!(id);
        event["type"] = json!(kind);
        event["created"] = json!(created);
        event["data"] = json!({ "object": object });
        if let Some(previous) = previous {
            event["data"]["previous_attributes"] = previous;
        }
        state.events.push(event);
        id
    }

    /// The JSON of the event with `id`, as a webhook would deliver it.
    pub fn event_json(&self, id: &str) -> Vec<u8> {
        let state = self.state.lock().expect("stripe state");
        let event = state
            .events
            .iter()
            .find(|event| event["id"] == id)
            .expect("a pushed event");
        serde_json::to_vec(event).expect("JSON")
    }

    /// Serves `reply` to the next request instead of its page.
    pub fn fault(&self, reply: Reply) {
        self.state
            .lock()
            .expect("stripe state")
            .faults
            .push_back(reply);
    }
}

/// `/v1/events?...` over `events`, as Stripe pages it.
fn list_events(events: &[Value], path: &str) -> Reply {
    let Some(query) = path.strip_prefix("/v1/events") else {
        return Reply::status(404, r#"{"error":{"message":"Unrecognized request URL"}}"#);
    };
    let query = query.trim_start_matches('?');
    let mut limit = 10usize;
    let mut created_gte = i64::MIN;
    let mut starting_after = None;
    let mut types = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.replace("%5B", "[").replace("%5D", "]");
        match key.as_str() {
            "limit" => limit = value.parse().unwrap_or(10).clamp(1, 100),
            "created[gte]" => created_gte = value.parse().unwrap_or(i64::MIN),
            "starting_after" => starting_after = Some(value.to_owned()),
            "types[]" => types.push(value.to_owned()),
            _ => {}
        }
    }
    // Newest first; Stripe breaks ties by its own order, here the reverse creation order.
    let mut listed: Vec<&Value> = events
        .iter()
        .rev()
        .filter(|event| event["created"].as_i64().unwrap_or(0) >= created_gte)
        .filter(|event| {
            types.is_empty()
                || types
                    .iter()
                    .any(|kind| event["type"].as_str() == Some(kind.as_str()))
        })
        .collect();
    listed.sort_by_key(|event| std::cmp::Reverse(event["created"].as_i64().unwrap_or(0)));
    if let Some(after) = starting_after {
        match listed
            .iter()
            .position(|event| event["id"] == after.as_str())
        {
            Some(at) => listed.drain(..=at),
            None => {
                return Reply::status(
                    400,
                    r#"{"error":{"message":"starting_after names no such event"}}"#,
                );
            }
        };
    }
    let has_more = listed.len() > limit;
    listed.truncate(limit);
    Reply::json(
        &json!({ "object": "list", "url": "/v1/events", "has_more": has_more, "data": listed })
            .to_string(),
    )
}
