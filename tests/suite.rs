//! Every integration test, in one binary: the files beside this one are its modules. One binary
//! compiles and links the shared setup and its generic code once instead of once per file (on
//! the 2-core CI machine that was about six of the suite's twelve minutes of compiling), and
//! its tests share one moto and one SeaweedFS. Each file keeps its own keys and prefixes in
//! the shared stores, as tests within a file always had to. `scripts/test read_path` still runs
//! one file: its tests' names start with the module's.

mod support;

mod abuse;
mod admin_port;
mod bound_bodies;
mod browser;
mod cache;
mod cli;
mod clients;
mod credentials;
mod explain;
mod faults;
mod front_door;
mod fuzz_corpus;
mod hardening;
mod http2;
mod jail;
mod limits;
mod local_store;
mod operations;
mod operator_kit;
mod read_path;
mod sources;
mod sources_on_demand;
mod stalled_uploads;
mod streaming;
mod writes;
