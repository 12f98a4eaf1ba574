//! The stores: the contract every backend keeps, the listing's fast paths and bounds, S3
//! version deletes, Azure conditional batches, and the request bill and throttling.

mod az_sas;
mod az_token;
mod conditional_batches_az;
mod listing_bounded;
mod listing_file;
mod remote;
mod s3_versions;
mod store_contract;
