//! Azure Table storage as a source: the account's tables exported with every property's EDM
//! type, and restored — a table, a partition, an entity or an OData filter's entities — in
//! entity group transactions of one partition each. A small REST client of our own (`client`,
//! signed by `auth`, paged by `paging`), entities as the service and a snapshot hold them
//! (`entity`), and transactions (`batch`).

pub mod auth;
pub mod batch;
pub mod client;
pub mod entity;
pub mod paging;
