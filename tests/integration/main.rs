//! Black-box tests: the real exporter binary and the real `aws-sdk-ec2` client against the
//! simulator, which speaks the EC2 and STS wire format on 127.0.0.1. One test binary, so that the
//! AWS SDK is linked once.

mod assets;
mod cloudwatch;
mod collection;
mod credentials;
mod dashboard;
mod discovery;
mod docs;
mod events;
mod exclude;
mod faults;
mod harness;
mod helm;
mod iam;
mod kubernetes;
mod landing;
mod operations;
mod organization_assets;
mod project_files;
mod release;
mod server_limits;
mod serving;
mod soak;
mod web;
