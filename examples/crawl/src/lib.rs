//! polyloop's crawler demo: fetch pages and extract their links in worker processes, schedule
//! and deduplicate in the parent, and an embedded website to crawl without a network.

pub mod crawl;
pub mod fetch;
pub mod links;
pub mod site;
pub mod tasks;
