//! The API's string formats as JSON Schema: one pattern per kind of value, describing
//! what rapport-core's parsers accept, so that the OpenAPI document and the server
//! agree (schemathesis holds them to it in CI; `tests/it/openapi.rs` checks that the
//! path parameters, which must spell their patterns out, use these).

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};

/// A name (of a person, an account, a token, a contact's title): not blank, no
/// control characters.
pub const NAME: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// Most characters of a name.
pub const NAME_CHARS_MAX: usize = 200;
/// Text people write (a note, a task): not blank; no ASCII control characters but
/// tab and line breaks.
pub const TEXT: &str =
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$";
/// Most characters of a note or task (an event's summary).
pub const TEXT_CHARS_MAX: usize = rapport_core::timeline::limits::SUMMARY_CHARS_MAX;
/// A calendar date in the years 1900 to 2199 (`YYYY-MM-DD`), leap days included.
pub const DATE: &str = r"^((19|20|21)[0-9]{2}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|((19|20|21)(0[48]|[2468][048]|[13579][26])|2000)-02-29)$";
/// A domain name in ASCII (internationalised ones as `xn--` labels): two to five
/// labels of at most 48 characters, the last starting with a letter; case and a final
/// dot do not matter. (The server also takes longer names, up to 253 characters.)
pub const DOMAIN: &str = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.?$";
/// Most characters of a domain.
pub const DOMAIN_CHARS_MAX: usize = 253;
/// A bare email address: dot-separated words before the `@`, a domain after it.
pub const EMAIL: &str = r"^[A-Za-z0-9!$&'*+=^_`{|}~-]{1,32}(\.[A-Za-z0-9!$&'*+=^_`{|}~-]{1,30})?@([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?$";
/// Most characters of an email address.
pub const EMAIL_CHARS_MAX: usize = 318;
/// An id in another system, `system:id`.
pub const EXTERNAL_ID: &str = r"^[a-z0-9_-]{1,32}:[^\s\x00-\x1f\x7f-\x9f]{1,255}$";

fn text_schema(pattern: &str, max: usize, nullable: bool) -> ObjectBuilder {
    let schema_type = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::from(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(schema_type)
        .pattern(Some(pattern))
        .max_length(Some(max))
        .min_length(Some(1))
}

/// A name.
pub(crate) fn name() -> ObjectBuilder {
    text_schema(NAME, NAME_CHARS_MAX, false)
}

/// A name, or `null`.
pub(crate) fn optional_name() -> ObjectBuilder {
    text_schema(NAME, NAME_CHARS_MAX, true)
}

/// A note's or task's text.
pub(crate) fn text() -> ObjectBuilder {
    text_schema(TEXT, TEXT_CHARS_MAX, false)
}

/// A date, or `null`.
pub(crate) fn optional_date() -> ObjectBuilder {
    text_schema(DATE, 10, true)
}

/// An email address.
pub(crate) fn email() -> ObjectBuilder {
    text_schema(EMAIL, EMAIL_CHARS_MAX, false)
}

/// An email address, or `null`.
pub(crate) fn optional_email() -> ObjectBuilder {
    text_schema(EMAIL, EMAIL_CHARS_MAX, true)
}

/// A domain.
pub(crate) fn domain() -> ObjectBuilder {
    text_schema(DOMAIN, DOMAIN_CHARS_MAX, false)
}

/// An external id.
pub(crate) fn external_id() -> ObjectBuilder {
    text_schema(EXTERNAL_ID, 288, false)
}

/// A list of domains.
pub(crate) fn domains() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(domain())
        .max_items(Some(LIST_MAX))
}

/// A list of external ids.
pub(crate) fn external_ids() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(external_id())
        .max_items(Some(LIST_MAX))
}

/// Most entries of a list in a body (domains, external ids, contacts).
pub const LIST_MAX: usize = 100;

/// A string field with one of these formats, for places where a schema function
/// cannot be named (an enum's tuple variant): inline it with `#[schema(inline)]`.
macro_rules! formatted {
    ($(#[$doc:meta])* $name:ident => $schema:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(transparent)]
        pub(crate) struct $name(pub(crate) String);

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::RefOr::T($schema().build().into())
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

formatted!(
    /// A domain, as [`DOMAIN`] describes.
    DomainText => domain
);
formatted!(
    /// An email address, as [`EMAIL`] describes.
    EmailText => email
);
formatted!(
    /// An external id, as [`EXTERNAL_ID`] describes.
    ExternalIdText => external_id
);
