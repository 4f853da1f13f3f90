//! Calls that run to their end whatever happens to their caller.

use super::AgentError;

/// Runs `work` to its end in a task of its own, whatever happens to the
/// caller: ttrpc drops a handler at the client's deadline, and a create or
/// teardown dropped halfway would leave half its work behind. If the caller
/// is gone when `work` succeeds, `if_abandoned` gets its result to undo.
///
/// Callers pass `work` boxed (`Box::pin`): a create's future is 13 KB, and
/// inline it would be copied with every future that holds it, into the
/// handler's box and again into the task.
pub async fn detached<T, W, U, UF>(work: W, if_abandoned: U) -> Result<T, AgentError>
where
    T: Send + 'static,
    W: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    U: FnOnce(T) -> UF + Send + 'static,
    UF: std::future::Future<Output = ()> + Send,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(Ok(v)) = tx.send(work.await) {
            if_abandoned(v).await;
        }
    });
    rx.await.unwrap_or_else(|_| {
        Err(AgentError::Internal(
            "the call's task ended without an answer (a bug); see the agent log".into(),
        ))
    })
}

/// `detached` for work whose result stays when the caller is gone.
pub async fn run_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
) -> Result<T, AgentError> {
    detached(work, |_| async {}).await
}
