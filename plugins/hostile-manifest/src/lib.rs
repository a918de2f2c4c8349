//! Describes itself with a 16 MiB name: a test program, never shipped. The host must
//! refuse it when it loads, naming the limit, and keep working.

use rapport_pdk::prelude::*;

struct HostileManifest;

impl Connector for HostileManifest {
    fn describe() -> Manifest {
        manifest(
            &"n".repeat(16 * 1024 * 1024),
            "0.1.0",
            "A manifest past every limit",
        )
        .emits(&["hostile.probe"])
        .into()
    }

    fn check(_: Config) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn sync(_: Config, _: Option<String>) -> Result<Page, ConnectorError> {
        Ok(Page::done(Vec::new()))
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Ok(Vec::new())
    }
}

rapport_pdk::export_connector!(HostileManifest);
