//! The agent's settings and the service definitions it loads from `--config-dir`.

pub mod agent_config;
pub mod nesting;
pub mod service_files;

pub use agent_config::{
    AgentConfig, DEFAULT_DATA_DIR, DEFAULT_DATACENTER, DEFAULT_HTTP_ADDR, DataDir, LogFormat,
    MAX_BODY_BYTES, default_node_name,
};
