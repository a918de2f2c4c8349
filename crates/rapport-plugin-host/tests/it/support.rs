//! A plugin host with test limits, and a loopback HTTP server.

use rapport_plugin_host::{CallLimits, Grants, HostConfig, Plugin, PluginHost};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The deadline the containment tests use.
pub const DEADLINE_MS: u64 = 1_000;
/// The memory cap the containment tests use.
pub const MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;

pub fn limits() -> CallLimits {
    CallLimits {
        memory_bytes_max: MEMORY_BYTES_MAX,
        deadline_ms: DEADLINE_MS,
        events_max: 10_000,
        returned_bytes_max: 8 * 1024 * 1024,
        http_response_bytes_max: 1024 * 1024,
        http_timeout_ms: 2_000,
        log_lines_max: 100,
    }
}

pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: None,
        pooling: true,
        concurrent_calls_max: 8,
        limits: limits(),
    })
    .expect("start the plugin host")
}

pub async fn example_feed(host: &PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_test_plugins::EXAMPLE_FEED))
        .await
        .expect("load example-feed")
}

pub async fn hostile(host: &PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_test_plugins::HOSTILE))
        .await
        .expect("load hostile")
}

pub fn grants(id: &str, settings: &[(&str, &str)], allowed_hosts: &[String]) -> Grants {
    Grants {
        connector_id: id.into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        secrets: BTreeMap::new(),
        allowed_hosts: allowed_hosts.to_vec(),
        allow_private_networks: true,
    }
}

/// One canned response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A loopback HTTP/1.1 server answering each request with `respond(path)`; records the
/// request heads it saw.
pub struct Upstream {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    pub async fn start(respond: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    seen.lock().unwrap().push(head);
                    let reply = respond(&path);
                    let mut response = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (name, value) in &reply.headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.write_all(&reply.body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Upstream { address, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn grant(&self) -> String {
        self.address.to_string()
    }
}
