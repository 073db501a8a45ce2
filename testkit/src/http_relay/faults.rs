//! The faults the relay injects into object GETs: their kinds, the seeded plan that says which
//! GET gets which, and the canned S3 error a server-error fault answers with.

/// How an object GET is failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The connection is closed once the request has arrived, with no response at all (the
    /// request never reaches the server).
    CloseWithoutResponse,
    /// A `500 InternalError` S3 error answers the request (which never reaches the server).
    InternalError,
    /// The server's response head is passed on with half its body (at least one byte short of
    /// its `Content-Length`), then the connection is closed. A response with no body to cut
    /// (an empty object, an error without a length) is dropped whole instead: the fault then
    /// counts as a [`CloseWithoutResponse`](FaultKind::CloseWithoutResponse).
    TruncatedBody,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [
        FaultKind::CloseWithoutResponse,
        FaultKind::InternalError,
        FaultKind::TruncatedBody,
    ];

    /// Its place in [`ALL`](FaultKind::ALL), to count faults by kind.
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Which object GETs fail and how: each, with probability `share`, one of `kinds` picked
/// evenly, from a generator seeded so that a run's sequence of decisions can be had again.
pub(super) struct FaultPlan {
    share: f64,
    kinds: Vec<FaultKind>,
    state: u64,
}

impl FaultPlan {
    /// A plan that fails nothing.
    pub(super) fn none() -> FaultPlan {
        FaultPlan::new(&FaultKind::ALL, 0.0, 0)
    }

    pub(super) fn new(kinds: &[FaultKind], share: f64, seed: u64) -> FaultPlan {
        assert!(!kinds.is_empty(), "a fault plan needs a kind of fault");
        assert!(
            (0.0..=1.0).contains(&share),
            "a share of GETs is within 0..=1, not {share}"
        );
        FaultPlan {
            share,
            kinds: kinds.to_vec(),
            state: seed,
        }
    }

    /// The fault for the next object GET, if it gets one.
    pub(super) fn next_fault(&mut self) -> Option<FaultKind> {
        if self.share <= 0.0 {
            return None;
        }
        // 53 random bits: a uniform float in [0, 1), so a share of 1.0 fails every GET.
        let roll = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.share {
            return None;
        }
        let pick = self.next_u64() % self.kinds.len() as u64;
        Some(self.kinds[pick as usize])
    }

    /// SplitMix64: small, seedable with any value, and good enough to spread faults.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A whole `500 InternalError` response as S3 sends one, closing the connection.
pub(super) fn internal_error_response() -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
        <Message>We encountered an internal error. Please try again.</Message>\
        <RequestId>http-relay-fault</RequestId></Error>";
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
         x-amz-request-id: http-relay-fault\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_one_fails_every_get_and_zero_none() {
        let mut always = FaultPlan::new(&FaultKind::ALL, 1.0, 7);
        assert!((0..1000).all(|_| always.next_fault().is_some()));
        let mut never = FaultPlan::new(&FaultKind::ALL, 0.0, 7);
        assert!((0..1000).all(|_| never.next_fault().is_none()));
    }

    #[test]
    fn a_share_fails_about_that_share_with_every_kind_and_a_seed_repeats_it() {
        let faults = |seed| {
            let mut plan = FaultPlan::new(&FaultKind::ALL, 0.3, seed);
            (0..10_000).map(|_| plan.next_fault()).collect::<Vec<_>>()
        };
        let run = faults(42);
        let failed = run.iter().flatten().count();
        assert!((2700..3300).contains(&failed), "{failed} of 10000 failed");
        for kind in FaultKind::ALL {
            let of_kind = run.iter().flatten().filter(|&&k| k == kind).count();
            assert!((800..1200).contains(&of_kind), "{of_kind} of {kind:?}");
        }
        assert_eq!(run, faults(42));
        assert_ne!(run, faults(43));
    }

    #[test]
    fn a_plan_of_one_kind_gives_only_that_kind() {
        let mut plan = FaultPlan::new(&[FaultKind::TruncatedBody], 1.0, 1);
        assert!((0..100).all(|_| plan.next_fault() == Some(FaultKind::TruncatedBody)));
    }

    #[test]
    fn the_error_response_is_as_long_as_it_says() {
        let response = internal_error_response();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 500 "));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(body.contains("<Code>InternalError</Code>"));
    }
}
