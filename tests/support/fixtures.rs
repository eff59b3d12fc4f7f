//! Config fixtures built as TOML tables and written by the `toml` crate: a test names the
//! settings it cares about, and never patches a config's text.

use toml::{Table, Value};

/// An `[[integration]]`: its name, bucket and region to start with.
#[derive(Clone)]
pub struct IntegrationFixture(Table);

impl IntegrationFixture {
    pub fn new(name: &str, bucket: &str) -> Self {
        IntegrationFixture::named(name).set("bucket", bucket)
    }

    /// An integration with a name and region only: its bucket or buckets to be set.
    pub fn named(name: &str) -> Self {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        table.insert("region".into(), "us-east-1".into());
        IntegrationFixture(table)
    }

    /// Adds `settings` (any integration settings; see [`settings`]).
    pub fn with(mut self, settings: Table) -> Self {
        self.0.extend(settings);
        self
    }

    /// Sets `key` (any integration setting) to `value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Static credentials: the access key id, and the variable holding the secret.
    pub fn static_keys(self, access_key_id: &str, secret_env: &str) -> Self {
        let mut credentials = Table::new();
        credentials.insert("access_key_id".into(), access_key_id.into());
        credentials.insert("secret_access_key_env".into(), secret_env.into());
        self.set("credentials", credentials)
    }
}

impl IntegrationFixture {
    /// Credentials by assuming `role_arn` with `external_id`.
    pub fn role(self, role_arn: &str, external_id: &str) -> Self {
        let mut credentials = Table::new();
        credentials.insert("role_arn".into(), role_arn.into());
        credentials.insert("external_id".into(), external_id.into());
        self.set("credentials", credentials)
    }

    /// A moto tenant's bucket through its own role, path-style at `endpoint`, public (as
    /// `support::role_integration` writes it).
    pub fn tenant(name: &str, tenant: &crate::support::Tenant, endpoint: &str) -> Self {
        IntegrationFixture::new(name, &tenant.bucket)
            .set("endpoint", endpoint)
            .set("addressing", "path")
            .set("public", true)
            .role(&tenant.role_arn, &tenant.external_id)
    }

    /// This integration alone, as `[[integration]]` text to put after other config text.
    pub fn toml(&self) -> String {
        let mut root = Table::new();
        root.insert(
            "integration".into(),
            Value::Array(vec![Value::Table(self.0.clone())]),
        );
        format!(
            "\n{}",
            toml::to_string(&root).expect("an integration is TOML")
        )
    }
}

/// A `[[client]]`: its key, the variable holding its secret, its integrations and access.
#[derive(Clone)]
pub struct ClientFixture(Table);

impl ClientFixture {
    pub fn new(access_key_id: &str, secret_env: &str, integrations: &[&str], access: &str) -> Self {
        let mut table = Table::new();
        table.insert("access_key_id".into(), access_key_id.into());
        table.insert("secret_access_key_env".into(), secret_env.into());
        let names: Vec<Value> = integrations.iter().map(|name| (*name).into()).collect();
        table.insert("integrations".into(), names.into());
        table.insert("access".into(), access.into());
        ClientFixture(table)
    }

    /// These clients, as `[[client]]` text to put after other config text.
    pub fn toml(clients: &[ClientFixture]) -> String {
        let mut root = Table::new();
        let tables = clients.iter().map(|c| Value::Table(c.0.clone())).collect();
        root.insert("client".into(), Value::Array(tables));
        format!("\n{}", toml::to_string(&root).expect("clients are TOML"))
    }
}

/// Settings written as TOML (`key = value` lines, tables allowed), parsed into a table: for
/// a test that varies a few of them.
pub fn settings(text: &str) -> Table {
    toml::from_str(text).unwrap_or_else(|error| panic!("settings are TOML: {error}\n{text}"))
}

/// `[server]` listening on any free port of 127.0.0.1 (what in-process proxies take).
pub fn listen_anywhere() -> Table {
    let mut server = Table::new();
    server.insert("listen".into(), "127.0.0.1:0".into());
    server
}

/// A whole config: `[server]` settings (may be empty), integrations and clients.
pub fn config(
    server: Table,
    integrations: &[IntegrationFixture],
    clients: &[ClientFixture],
) -> String {
    let mut root = Table::new();
    if !server.is_empty() {
        root.insert("server".into(), server.into());
    }
    let tables = |list: Vec<Table>| Value::Array(list.into_iter().map(Value::Table).collect());
    root.insert(
        "integration".into(),
        tables(integrations.iter().map(|i| i.0.clone()).collect()),
    );
    if !clients.is_empty() {
        root.insert(
            "client".into(),
            tables(clients.iter().map(|c| c.0.clone()).collect()),
        );
    }
    toml::to_string(&root).expect("a config is TOML")
}
