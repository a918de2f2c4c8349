//! Checkpoints kept as JSON: the host stores the string a connector returns with each
//! page and hands it back on the next call. Reading one that does not parse is fatal —
//! it was written by something else (another connector, an incompatible version), and
//! guessing a position could skip or repeat data.

use crate::ConnectorError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The stored checkpoint as `T`; `None` when there is none yet (the first sync).
pub fn load<T: DeserializeOwned>(stored: Option<&str>) -> Result<Option<T>, ConnectorError> {
    stored
        .map(|text| {
            serde_json::from_str(text).map_err(|error| {
                ConnectorError::Fatal(format!(
                    "the stored checkpoint `{text}` is not this connector's: {error}"
                ))
            })
        })
        .transpose()
}

/// `checkpoint` as the string to return with a page.
pub fn save<T: Serialize>(checkpoint: &T) -> String {
    serde_json::to_string(checkpoint).expect("a checkpoint serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Position {
        cursor: String,
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_its_own() {
        let position = Position {
            cursor: "abc".into(),
        };
        let saved = save(&position);
        assert_eq!(load::<Position>(Some(&saved)).unwrap(), Some(position));
        assert_eq!(load::<Position>(None).unwrap(), None);
        match load::<Position>(Some("42")) {
            Err(ConnectorError::Fatal(message)) => {
                assert!(message.contains("is not this connector's"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
