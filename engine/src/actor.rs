//! Who sent a command: recorded beside the events it appends (the store's `metadata` column), so
//! `hedgehog events` is an audit trail of who switched what, from where.
//!
//! Only commands carry it: the engine's own decisions and market data have none.

use std::net::SocketAddr;

use hedgehog_store::{Metadata, Store};

/// Who sent a command, and through what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The person or program: `user@host` on the command line, the token's name over HTTP,
    /// `anonymous` when authentication is off.
    pub by: String,
    /// `cli`, `config` (what `run` applies at first start), `http` or `dashboard`.
    pub via: &'static str,
    /// The client's address, over HTTP.
    pub client: Option<SocketAddr>,
}

impl Actor {
    /// The user running this command line, on this host.
    pub fn cli() -> Actor {
        Actor {
            by: user_at_host(),
            via: "cli",
            client: None,
        }
    }

    /// The configuration, applied by `run` at first start on behalf of the user running it.
    pub fn config() -> Actor {
        Actor {
            via: "config",
            ..Actor::cli()
        }
    }

    /// An HTTP request authenticated as `by` (a token's name), from `client`; `dashboard` when
    /// it came with the dashboard's session cookie.
    pub fn http(by: &str, client: Option<SocketAddr>, dashboard: bool) -> Actor {
        Actor {
            by: by.to_owned(),
            via: if dashboard { "dashboard" } else { "http" },
            client,
        }
    }

    /// The metadata recorded beside the command's events.
    pub fn metadata(&self) -> Metadata {
        let mut metadata = Metadata::new();
        metadata.insert("by".to_owned(), self.by.clone());
        metadata.insert("via".to_owned(), self.via.to_owned());
        if let Some(client) = self.client {
            metadata.insert("client".to_owned(), client.to_string());
        }
        metadata
    }

    /// `store`, whose command appends record this actor.
    pub fn on(&self, store: &Store) -> Store {
        store.acting_for(self.metadata())
    }
}

/// `user@host`, with `?` for what the system will not say.
fn user_at_host() -> String {
    let user = whoami::fallible::username().unwrap_or_else(|_| "?".to_owned());
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "?".to_owned());
    format!("{user}@{host}")
}

/// One line for `hedgehog events`: `by via client`, or empty.
pub fn describe(metadata: &Metadata) -> String {
    let mut parts = Vec::new();
    if let Some(by) = metadata.get("by") {
        parts.push(by.clone());
    }
    if let Some(via) = metadata.get("via") {
        parts.push(format!("({via}"));
        if let Some(client) = metadata.get("client") {
            parts.push(format!("{client})"));
        } else if let Some(last) = parts.last_mut() {
            last.push(')');
        }
    }
    for (k, v) in metadata {
        if !["by", "via", "client"].contains(&k.as_str()) {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_actor_names_the_token_and_the_client() {
        let actor = Actor::http("desk", Some("127.0.0.1:5050".parse().unwrap()), false);
        let metadata = actor.metadata();
        assert_eq!(metadata["by"], "desk");
        assert_eq!(metadata["via"], "http");
        assert_eq!(metadata["client"], "127.0.0.1:5050");
        assert_eq!(describe(&metadata), "desk (http 127.0.0.1:5050)");
    }

    #[test]
    fn a_cli_actor_is_a_user_at_a_host() {
        let metadata = Actor::cli().metadata();
        assert!(metadata["by"].contains('@'), "{metadata:?}");
        assert!(!metadata.contains_key("client"));
        assert_eq!(
            describe(&metadata),
            format!("{} (cli)", metadata["by"]),
            "{metadata:?}"
        );
        assert_eq!(describe(&Metadata::new()), "");
    }
}
