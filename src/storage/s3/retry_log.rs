//! A WARN line for every retry the S3 client makes, so that throttling or a failing server shows
//! in PostgreSQL's log while it is being ridden out, not only once the retries are used up.

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

/// Logs the attempts after the first of each request.
#[derive(Debug)]
pub(super) struct RetryLog {
    pub(super) max_attempts: u32,
}

impl Intercept for RetryLog {
    fn name(&self) -> &'static str {
        "tidemark retry log"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let operation = cfg.load::<Metadata>().map_or("request", |m| m.name());
            tracing::warn!(
                "S3 {operation} failed; trying again, attempt {attempt} of {}",
                self.max_attempts
            );
        }
        Ok(())
    }
}
