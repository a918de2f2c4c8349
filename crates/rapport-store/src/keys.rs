//! Deployment-wide secrets, made on first use and shared by every node through the
//! database (so one node accepts what another signed).

use crate::{Result, Store, with_backend};

impl Store {
    /// The secret named `name`, made (two v4 UUIDs: 244 random bits, hex) the first time any node asks.
    pub async fn server_key(&self, name: &str) -> Result<String> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let value: String = with_backend!(self, |pool, dialect| {
            // Two nodes may race to make it; the first insert wins and both read it.
            sqlx::query("INSERT INTO server_keys (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(&fresh)
                .execute(pool)
                .await?;
            sqlx::query_scalar("SELECT value FROM server_keys WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?
        });
        Ok(value)
    }
}
