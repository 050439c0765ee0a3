//! The two connection tasks: each carries out the adapter's commands for
//! its link and reports what Redis said. They decide nothing: a failure is
//! reported, and the adapter says when to connect again.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::{
    AsyncConnectionConfig, Client, Value,
    aio::{MultiplexedConnection, PubSubSink, PubSubStream},
};
use tokio::sync::mpsc;
use wsio::cluster::{Link, RedisCommand};

use crate::redis::{CONNECT_TIMEOUT, Input, RESPONSE_TIMEOUT};

/// Commands sent as one pipeline at most.
const MAX_BATCH: usize = 512;

/// The publishing connection: `Connect` opens it; publishes and node
/// counts waiting in the channel go as one pipeline, whose failure loses
/// the connection.
pub(crate) async fn publisher(
    client: Client,
    mut commands: mpsc::Receiver<RedisCommand>,
    inputs: mpsc::Sender<Input>,
) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn: Option<MultiplexedConnection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while commands.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut asked = Vec::new();
        let mut queued = 0usize;
        for cmd in batch.drain(..) {
            match cmd {
                RedisCommand::Connect(_) => {
                    // What was batched before was meant for the lost
                    // connection: the adapter counts it as lost.
                    pipe = redis::pipe();
                    asked.clear();
                    queued = 0;
                    conn = None;
                    let input = match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(c) => {
                            conn = Some(c);
                            Input::Connected(Link::Publisher)
                        }
                        Err(e) => Input::Lost(Link::Publisher, e.to_string()),
                    };
                    if inputs.send(input).await.is_err() {
                        return;
                    }
                }
                RedisCommand::Publish { channel, payload } => {
                    pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
                    queued += 1;
                }
                RedisCommand::NumSub { token, channel } => {
                    pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel);
                    asked.push(token);
                    queued += 1;
                }
                _ => {}
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        if queued == 0 {
            continue;
        }
        match pipe.query_async::<Vec<Value>>(c).await {
            Ok(answers) => {
                for (token, answer) in asked.into_iter().zip(answers) {
                    let Some(count) = numsub_count(&answer) else {
                        continue;
                    };
                    if inputs.send(Input::NumSub { token, count }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                conn = None;
                if inputs
                    .send(Input::Lost(Link::Publisher, e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// The count in a `PUBSUB NUMSUB channel` answer: `[channel, count]`.
fn numsub_count(answer: &Value) -> Option<usize> {
    let Value::Array(items) = answer else {
        return None;
    };
    match items.get(1)? {
        Value::Int(n) => usize::try_from(*n).ok(),
        _ => None,
    }
}

enum Step {
    Command(Option<RedisCommand>),
    Message(Option<redis::Msg>),
}

/// The next message, or never while there is no connection.
async fn next_message(stream: &mut Option<PubSubStream>) -> Option<redis::Msg> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The subscribing connection: `Connect` opens it, subscriptions are made
/// on it, and its messages go to the loop (dropped and counted in
/// `dropped` when the loop's channel is full, so the Redis client's own
/// buffer never grows); the end of its stream is the loss of the
/// connection.
pub(crate) async fn subscriber(
    client: Client,
    mut commands: mpsc::UnboundedReceiver<RedisCommand>,
    inputs: mpsc::Sender<Input>,
    dropped: Arc<AtomicU64>,
) {
    let mut sink: Option<PubSubSink> = None;
    let mut stream: Option<PubSubStream> = None;
    loop {
        let step = tokio::select! {
            biased;
            cmd = commands.recv() => Step::Command(cmd),
            msg = next_message(&mut stream) => Step::Message(msg),
        };
        let input = match step {
            Step::Command(None) => return,
            Step::Command(Some(RedisCommand::Connect(_))) => {
                sink = None;
                stream = None;
                match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
                    Ok(Ok(p)) => {
                        let (s, st) = p.split();
                        sink = Some(s);
                        stream = Some(st);
                        Input::Connected(Link::Subscriber)
                    }
                    Ok(Err(e)) => Input::Lost(Link::Subscriber, e.to_string()),
                    Err(_) => Input::Lost(Link::Subscriber, "connection timed out".into()),
                }
            }
            Step::Command(Some(cmd)) => {
                let Some(s) = sink.as_mut() else {
                    // Meant for a lost connection: confirmed as dropped.
                    if matches!(
                        cmd,
                        RedisCommand::Subscribe { .. } | RedisCommand::PSubscribe { .. }
                    ) && inputs.send(Input::Subscribed).await.is_err()
                    {
                        return;
                    }
                    continue;
                };
                let (done, subscribe) = match cmd {
                    RedisCommand::Subscribe { channels } => (
                        tokio::time::timeout(RESPONSE_TIMEOUT, s.subscribe(channels)).await,
                        true,
                    ),
                    RedisCommand::PSubscribe { pattern } => (
                        tokio::time::timeout(RESPONSE_TIMEOUT, s.psubscribe(pattern)).await,
                        true,
                    ),
                    RedisCommand::Unsubscribe { channels } => (
                        tokio::time::timeout(RESPONSE_TIMEOUT, s.unsubscribe(channels)).await,
                        false,
                    ),
                    RedisCommand::PUnsubscribe { pattern } => (
                        tokio::time::timeout(RESPONSE_TIMEOUT, s.punsubscribe(pattern)).await,
                        false,
                    ),
                    _ => continue,
                };
                match done {
                    Ok(Ok(())) if subscribe => Input::Subscribed,
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => {
                        sink = None;
                        stream = None;
                        Input::Lost(Link::Subscriber, e.to_string())
                    }
                    Err(_) => {
                        sink = None;
                        stream = None;
                        Input::Lost(Link::Subscriber, "no answer to a subscription".into())
                    }
                }
            }
            Step::Message(Some(msg)) => {
                let input = Input::Message {
                    channel: msg.get_channel_name().to_owned(),
                    payload: Bytes::copy_from_slice(msg.get_payload_bytes()),
                };
                match inputs.try_send(input) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let n = dropped.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                        if n.is_power_of_two() {
                            log::warn!(
                                "wsio-cluster: the server is slower than the cluster: {n} messages from Redis dropped so far"
                            );
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
                continue;
            }
            Step::Message(None) => {
                sink = None;
                stream = None;
                Input::Lost(Link::Subscriber, "connection closed".into())
            }
        };
        if inputs.send(input).await.is_err() {
            return;
        }
    }
}
