//! Client accounts: the book (what a viewer sees, filtered and searched), one account,
//! its subsidiaries, and its domains, external ids and contacts.

use crate::api::auth::Viewer;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Body, Params, Segments};
use crate::api::model::{AccountPage, AccountTreeNode, AccountView, LifecycleName};
use crate::api::page_limit;
use crate::app::{Identifier, authorize};
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{NaiveDate, Utc};
use rapport_core::account::{Account, Contact, Domain, EmailAddress, ExternalId, NewAccount};
use rapport_core::permission::Action;
use rapport_core::{AccountId, StaffId};
use rapport_store::AccountUpdate;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most accounts one page of the book returns.
pub const BOOK_PAGE_MAX: u32 = 500;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(book, create_account))
        .routes(routes!(get_account, update_account))
        .routes(routes!(account_tree))
        .routes(routes!(add_domain, remove_domain))
        .routes(routes!(add_external_id, remove_external_id))
        .routes(routes!(put_contact, remove_contact))
}

/// Which part of the book.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BookScope {
    /// Everything the viewer can see.
    #[default]
    All,
    /// Accounts the viewer owns.
    Owned,
    /// Accounts the viewer supports.
    Supported,
    /// Accounts owned or supported by someone reporting to the viewer.
    Reports,
}

/// Filters for the book.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BookParams {
    /// `all` (default), `owned`, `supported` or `reports`.
    #[serde(default)]
    #[param(inline)]
    scope: BookScope,
    /// Only accounts this staff member owns or supports (within what the viewer sees).
    staff: Option<i64>,
    /// Name contains, or a domain starts with, this text (case-insensitive).
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only this lifecycle status.
    #[param(inline)]
    lifecycle: Option<LifecycleName>,
    /// Page size (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(max_length = 512)]
    cursor: Option<String>,
}

/// The viewer's book: every account they can see (their own, their reports', and
/// subsidiaries of those), by name, filtered and searched.
#[utoipa::path(get, path = "/accounts", tag = "accounts", security(("bearer" = [])), params(BookParams),
    responses((status = 200, body = AccountPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn book(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<BookParams>,
) -> ApiResult<Json<AccountPage>> {
    let store = state.engine.store();
    let listing = format!("book:{}", viewer.id.0);
    let after: Option<(String, i64)> = params
        .cursor
        .as_deref()
        // Empty is "from the top", as leaving it out is.
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let limit = page_limit(params.limit, 100, BOOK_PAGE_MAX)? as usize;
    let mut visible: Vec<AccountId> = store
        .visible_account_ids(viewer.id, Utc::now())
        .await?
        .into_iter()
        .collect();
    if let Some(text) = params.q.as_deref().filter(|text| !text.trim().is_empty()) {
        visible = store.search_accounts(text, &visible).await?;
    }
    let reports = match params.scope {
        BookScope::Reports => {
            let mut team = store.reporting_subtree(viewer.id).await?;
            team.remove(&viewer.id);
            team
        }
        _ => Default::default(),
    };
    let involves = |account: &Account, staff: StaffId| {
        account.owner == Some(staff) || account.supporters.contains(&staff)
    };
    let mut accounts: Vec<Account> = store
        .accounts(&visible)
        .await?
        .into_iter()
        .filter(|account| match params.scope {
            BookScope::All => true,
            BookScope::Owned => account.owner == Some(viewer.id),
            BookScope::Supported => account.supporters.contains(&viewer.id),
            BookScope::Reports => reports.iter().any(|staff| involves(account, *staff)),
        })
        .filter(|account| {
            params
                .staff
                .is_none_or(|staff| involves(account, StaffId(staff)))
        })
        .filter(|account| {
            params
                .lifecycle
                .is_none_or(|lifecycle| LifecycleName::from(account.lifecycle) == lifecycle)
        })
        .collect();
    let key = |account: &Account| (account.name.to_lowercase(), account.id.0);
    accounts.sort_by_cached_key(key);
    if let Some(after) = &after {
        accounts.retain(|account| &key(account) > after);
    }
    let next = (accounts.len() > limit).then(|| {
        let last = &accounts[limit - 1];
        state.cursors.sign(&listing, &key(last))
    });
    accounts.truncate(limit);
    Ok(Json(AccountPage {
        accounts: accounts.into_iter().map(AccountView::from).collect(),
        next,
    }))
}

/// A person at the client.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactBody {
    /// Their email (the contact's identity).
    #[schema(schema_with = crate::api::formats::email)]
    email: String,
    /// Their name.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    name: Option<String>,
    /// Their role at the client.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    title: Option<String>,
}

impl ContactBody {
    fn into_contact(self) -> ApiResult<Contact> {
        Ok(Contact {
            email: EmailAddress::parse(&self.email)?,
            name: self.name,
            title: self.title,
        })
    }
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccountBody {
    /// Display name.
    #[schema(schema_with = crate::api::formats::name)]
    name: String,
    /// Its owner: a manager, director or VP in your reporting line (admins: anyone).
    owner: i64,
    /// The parent account, for a subsidiary (one you can see).
    #[serde(default)]
    parent: Option<i64>,
    /// Lifecycle status (default `active`).
    #[serde(default)]
    lifecycle: Option<LifecycleName>,
    /// When the contract renews.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_date)]
    renewal_date: Option<NaiveDate>,
    /// Its domains.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::domains)]
    domains: Vec<String>,
    /// Its ids in other systems, as `system:id`.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::external_ids)]
    external_ids: Vec<String>,
    /// People at the client.
    #[serde(default)]
    #[schema(max_items = 100)]
    contacts: Vec<ContactBody>,
}

/// Opens an account, with its first owner recorded on its timeline.
#[utoipa::path(post, path = "/accounts", tag = "accounts", security(("bearer" = [])), request_body = NewAccountBody,
    responses((status = 201, body = AccountView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_account(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Body(body): Body<NewAccountBody>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let owner = StaffId(body.owner);
    let parent = body.parent.map(AccountId);
    let list_max = crate::api::formats::LIST_MAX;
    for (what, count) in [
        ("domains", body.domains.len()),
        ("external_ids", body.external_ids.len()),
        ("contacts", body.contacts.len()),
    ] {
        if count > list_max {
            return Err(ApiError::Invalid(format!(
                "{what} has {count} entries; at most {list_max}: add the rest afterwards"
            )));
        }
    }
    let new = NewAccount {
        name: body.name,
        parent,
        lifecycle: body.lifecycle.unwrap_or(LifecycleName::Active).into(),
        renewal_date: body.renewal_date,
        domains: body
            .domains
            .iter()
            .map(|domain| Domain::parse(domain))
            .collect::<Result<_, _>>()?,
        external_ids: body
            .external_ids
            .iter()
            .map(|id| id.parse::<ExternalId>())
            .collect::<Result<_, _>>()?,
        contacts: body
            .contacts
            .into_iter()
            .map(ContactBody::into_contact)
            .collect::<ApiResult<_>>()?,
        owner,
    };
    let account = crate::app::create_account(state.engine.store(), &viewer, new).await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// One account.
#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_account(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<AccountView>> {
    let account = crate::app::account(state.engine.store(), &viewer, AccountId(id)).await?;
    Ok(Json(account.into()))
}

/// Changes to an account; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountPatch {
    /// New display name.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    name: Option<String>,
    /// New lifecycle status.
    #[serde(default)]
    lifecycle: Option<LifecycleName>,
    /// New renewal date; `null` clears it.
    #[serde(default, deserialize_with = "crate::api::extract::present")]
    #[schema(schema_with = crate::api::formats::optional_date)]
    renewal_date: Option<Option<NaiveDate>>,
    /// New parent account (one you can see); `null` makes it a top-level account.
    #[serde(default, deserialize_with = "crate::api::extract::present")]
    #[schema(value_type = Option<i64>)]
    parent: Option<Option<i64>>,
}

/// Changes an account's name, status, renewal date or parent. Renaming, changing the
/// status and re-parenting are for managers and above (associates: 403); the renewal
/// date is anyone's who sees the account.
#[utoipa::path(patch, path = "/accounts/{id}", tag = "accounts", security(("bearer" = [])), request_body = AccountPatch,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_account(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<AccountPatch>,
) -> ApiResult<Json<AccountView>> {
    let update = AccountUpdate {
        name: body.name,
        lifecycle: body.lifecycle.map(Into::into),
        renewal_date: body.renewal_date,
        parent: body.parent.map(|parent| parent.map(AccountId)),
    };
    let updated =
        crate::app::update_account(state.engine.store(), &viewer, AccountId(id), update).await?;
    Ok(Json(updated.into()))
}

/// An account and all its subsidiaries, as a tree (all visible: seeing a parent means
/// seeing what is beneath it).
#[utoipa::path(get, path = "/accounts/{id}/tree", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AccountTreeNode), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn account_tree(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<AccountTreeNode>> {
    let root = AccountId(id);
    authorize(state.engine.store(), &viewer, Action::See(root)).await?;
    let store = state.engine.store();
    let forest = rapport_core::account::AccountForest::new(store.account_tree().await?);
    let ids: Vec<AccountId> = forest.subtree(root).into_iter().collect();
    let names: BTreeMap<AccountId, String> = store
        .accounts(&ids)
        .await?
        .into_iter()
        .map(|account| (account.id, account.name))
        .collect();
    let mut children: BTreeMap<AccountId, Vec<AccountId>> = BTreeMap::new();
    for &account in &ids {
        if account != root
            && let Some(parent) = forest.parent(account)
        {
            children.entry(parent).or_default().push(account);
        }
    }
    fn build(
        account: AccountId,
        names: &BTreeMap<AccountId, String>,
        children: &BTreeMap<AccountId, Vec<AccountId>>,
    ) -> AccountTreeNode {
        AccountTreeNode {
            id: account.0,
            name: names.get(&account).cloned().unwrap_or_default(),
            children: children
                .get(&account)
                .map(|kids| {
                    kids.iter()
                        .map(|kid| build(*kid, names, children))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
    Ok(Json(build(root, &names, &children)))
}

/// Gives an account a domain; events from that domain then match it (waiting ones at
/// once).
#[utoipa::path(put, path = "/accounts/{id}/domains/{domain}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("domain" = String, Path, description = "e.g. acme.example", pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.?$", max_length = 253)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn add_domain(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, domain)): Segments<(i64, String)>,
) -> ApiResult<Json<AccountView>> {
    let change = Identifier::AddDomain(&Domain::parse(&domain)?);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}

/// Removes a domain from an account (events already placed by it stay).
#[utoipa::path(delete, path = "/accounts/{id}/domains/{domain}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("domain" = String, Path, description = "e.g. acme.example", pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.?$", max_length = 253)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn remove_domain(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, domain)): Segments<(i64, String)>,
) -> ApiResult<Json<AccountView>> {
    let change = Identifier::RemoveDomain(&Domain::parse(&domain)?);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}

/// Gives an account an id in another system (`stripe:cus_123`); refused if another
/// account holds it.
#[utoipa::path(put, path = "/accounts/{id}/external-ids/{external_id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("external_id" = String, Path, description = "`system:id`, e.g. stripe:cus_123", pattern = r"^[a-z0-9_-]{1,32}:[^\s\x00-\x1f\x7f-\x9f]{1,255}$", max_length = 288)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_external_id(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, external_id)): Segments<(i64, String)>,
) -> ApiResult<Json<AccountView>> {
    let change = Identifier::AddExternalId(&external_id.parse::<ExternalId>()?);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}

/// Removes an external id from an account.
#[utoipa::path(delete, path = "/accounts/{id}/external-ids/{external_id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("external_id" = String, Path, description = "`system:id`", pattern = r"^[a-z0-9_-]{1,32}:[^\s\x00-\x1f\x7f-\x9f]{1,255}$", max_length = 288)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn remove_external_id(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, external_id)): Segments<(i64, String)>,
) -> ApiResult<Json<AccountView>> {
    let change = Identifier::RemoveExternalId(&external_id.parse::<ExternalId>()?);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}

/// A contact's name and title.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactDetails {
    /// Their name.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    name: Option<String>,
    /// Their role at the client.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    title: Option<String>,
}

/// Adds a contact to an account, or updates their name and title.
#[utoipa::path(put, path = "/accounts/{id}/contacts/{email}", tag = "accounts", security(("bearer" = [])),
    request_body = ContactDetails,
    params(("id" = i64, Path, description = "Account id"), ("email" = String, Path, description = "The contact's email", pattern = r"^[A-Za-z0-9!$&'*+=^_`{|}~-]{1,32}(\.[A-Za-z0-9!$&'*+=^_`{|}~-]{1,30})?@([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?$", max_length = 318)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn put_contact(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, email)): Segments<(i64, String)>,
    Body(details): Body<ContactDetails>,
) -> ApiResult<Json<AccountView>> {
    let contact = ContactBody {
        email,
        name: details.name,
        title: details.title,
    }
    .into_contact()?;
    let change = Identifier::PutContact(&contact);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}

/// Removes a contact from an account.
#[utoipa::path(delete, path = "/accounts/{id}/contacts/{email}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("email" = String, Path, description = "The contact's email", pattern = r"^[A-Za-z0-9!$&'*+=^_`{|}~-]{1,32}(\.[A-Za-z0-9!$&'*+=^_`{|}~-]{1,30})?@([A-Za-z0-9]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?\.){1,4}[A-Za-z]([A-Za-z0-9-]{0,46}[A-Za-z0-9])?$", max_length = 318)),
    responses((status = 200, body = AccountView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn remove_contact(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, email)): Segments<(i64, String)>,
) -> ApiResult<Json<AccountView>> {
    let change = Identifier::RemoveContact(&EmailAddress::parse(&email)?);
    let account =
        crate::app::change_identifier(state.engine.store(), &viewer, AccountId(id), change).await?;
    Ok(Json(account.into()))
}
