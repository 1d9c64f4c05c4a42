//! The driver kit: what operator files share, so that they never import each other. An
//! operator file holds its spec, its request paths and its response decoding; the rest is here.

pub mod decode;
pub mod http;
pub mod ids;
pub mod jwt;
pub mod options;
pub mod pager;
pub mod person_login;
pub mod platform;
pub mod quota;
pub mod remainders;
pub mod session;
pub mod session_store;
pub mod token_file;
