//! Paged answers of the Table service: a query answers at most 1,000 entities (a table
//! listing, 1,000 tables) and, while more may follow, continuation headers —
//! `x-ms-continuation-NextPartitionKey`/`NextRowKey` for entities, `NextTableName` for tables.
//! A page may be empty and still carry one (a scan that crossed a partition server's
//! boundary, or ran out of time), so paging goes on until no continuation comes, never until
//! an empty page.

use std::future::Future;

use anyhow::bail;

/// Where the next page of an entity query starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityContinuation {
    pub next_partition_key: String,
    pub next_row_key: Option<String>,
}

impl EntityContinuation {
    /// The continuation an answer's headers carry, if any (`header` reads one by name).
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Option<Self> {
        let partition = header("x-ms-continuation-NextPartitionKey")?;
        Some(EntityContinuation {
            next_partition_key: partition.to_owned(),
            next_row_key: header("x-ms-continuation-NextRowKey").map(str::to_owned),
        })
    }

    /// The query parameters that ask for the page it names.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("NextPartitionKey", self.next_partition_key.clone())];
        if let Some(row) = &self.next_row_key {
            query.push(("NextRowKey", row.clone()));
        }
        query
    }
}

/// One page: its items, and where the next starts (`None`: this was the last).
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Fetches every page, from the first (`fetch(None)`) on, handing each page's items to `each`
/// as it comes. A continuation equal to the one just followed is an error, not an endless scan.
pub async fn for_each_page<T, C, F, Fut>(
    mut fetch: F,
    mut each: impl FnMut(Vec<T>) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    C: PartialEq + Clone + std::fmt::Debug,
    F: FnMut(Option<C>) -> Fut,
    Fut: Future<Output = anyhow::Result<Page<T, C>>>,
{
    let mut after: Option<C> = None;
    loop {
        let page = fetch(after.clone()).await?;
        each(page.items)?;
        match page.next {
            None => return Ok(()),
            Some(next) if after.as_ref() == Some(&next) => bail!(
                "the service answered the same continuation twice ({next:?}): the scan would never end"
            ),
            Some(next) => after = Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(script: Vec<(Vec<u32>, Option<&'static str>)>) -> (Vec<u32>, Vec<Option<String>>) {
        let mut asked = Vec::new();
        let mut got = Vec::new();
        let mut script = script.into_iter();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(for_each_page(
                |after: Option<String>| {
                    asked.push(after);
                    let (items, next) = script.next().expect("asked for no page beyond the last");
                    async move {
                        Ok(Page {
                            items,
                            next: next.map(str::to_owned),
                        })
                    }
                },
                |items| {
                    got.extend(items);
                    Ok(())
                },
            ))
            .unwrap();
        (got, asked)
    }

    #[test]
    fn an_empty_page_with_a_continuation_is_followed() {
        let (got, asked) = pages(vec![
            (vec![1, 2], Some("a")),
            (vec![], Some("b")),
            (vec![], Some("c")),
            (vec![3], None),
        ]);
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(
            asked,
            [None, Some("a".into()), Some("b".into()), Some("c".into())]
        );
    }

    #[test]
    fn paging_stops_only_when_no_continuation_comes() {
        let (got, asked) = pages(vec![(vec![1], Some("a")), (vec![2], None)]);
        assert_eq!(got, [1, 2]);
        assert_eq!(asked.len(), 2);
        let (got, asked) = pages(vec![(vec![], None)]);
        assert!(got.is_empty());
        assert_eq!(asked, [None]);
    }

    #[test]
    fn a_repeated_continuation_is_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime
            .block_on(for_each_page(
                |_after: Option<String>| async {
                    Ok(Page {
                        items: vec![0u8],
                        next: Some("same".to_owned()),
                    })
                },
                |_| Ok(()),
            ))
            .unwrap_err();
        assert!(
            error.to_string().contains("same continuation twice"),
            "{error}"
        );
    }

    #[test]
    fn continuation_headers_are_read_by_name() {
        let headers = [
            ("x-ms-continuation-NextPartitionKey", "1!8!cGsx"),
            ("x-ms-continuation-NextRowKey", "1!8!cmsx"),
        ];
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let next = EntityContinuation::from_headers(find).unwrap();
        assert_eq!(
            next.query(),
            [
                ("NextPartitionKey", "1!8!cGsx".to_owned()),
                ("NextRowKey", "1!8!cmsx".to_owned())
            ]
        );
        assert_eq!(EntityContinuation::from_headers(|_| None), None);
    }
}
