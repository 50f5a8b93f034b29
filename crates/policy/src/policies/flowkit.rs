//! Test helpers for the flow policies (retry, wait, send-request, limit-concurrency, quota):
//! an `Io` whose clones share one recorded state, with scripted backend answers, outbound
//! answers that take a given number of polls, concurrency slots and recorded sleeps.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::exchange::{Exchange, Response};
use crate::expr::HttpResponse;
use crate::run::{Decision, Io, OutboundRequest, PolicyError, Slot};

use super::ForwardRequest;

type Answer = Arc<dyn Fn(&OutboundRequest) -> Result<HttpResponse, PolicyError> + Send + Sync>;

#[derive(Default)]
pub struct FlowState {
    pub forwards: AtomicU64,
    /// Bodies the backend received, in order.
    pub forwarded_bodies: Mutex<Vec<Bytes>>,
    /// Statuses the backend answers with, in order; 200 once used up.
    pub statuses: Mutex<VecDeque<u16>>,
    pub sleeps: Mutex<Vec<Duration>>,
    pub sent: Mutex<Vec<OutboundRequest>>,
    pub detached: Mutex<Vec<OutboundRequest>>,
    /// URLs of outbound requests in the order their answers completed.
    pub completed: Arc<Mutex<Vec<String>>>,
    /// Polls an outbound request to a URL takes before it answers.
    pub delays: Mutex<HashMap<String, u32>>,
    pub answer: Mutex<Option<Answer>>,
    pub counters: Mutex<HashMap<String, u64>>,
    pub slots: Arc<Mutex<HashMap<String, u64>>>,
    pub most_in_use: Arc<AtomicU64>,
}

#[derive(Clone, Default)]
pub struct FlowIo {
    pub state: Arc<FlowState>,
}

/// A slot of the test `Io`: gives itself back when dropped.
struct Held {
    key: String,
    slots: Arc<Mutex<HashMap<String, u64>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.slots.lock().unwrap();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
        }
    }
}

impl FlowIo {
    pub fn statuses(self, list: &[u16]) -> Self {
        self.state.statuses.lock().unwrap().extend(list);
        self
    }

    pub fn answer(
        self,
        f: impl Fn(&OutboundRequest) -> Result<HttpResponse, PolicyError> + Send + Sync + 'static,
    ) -> Self {
        *self.state.answer.lock().unwrap() = Some(Arc::new(f));
        self
    }

    pub fn delay(self, url: &str, polls: u32) -> Self {
        self.state
            .delays
            .lock()
            .unwrap()
            .insert(url.to_owned(), polls);
        self
    }

    /// Takes a slot of `key` as another request would.
    pub fn take_slot(&self, key: &str) -> impl Drop {
        *self
            .state
            .slots
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_insert(0) += 1;
        Held {
            key: key.to_owned(),
            slots: self.state.slots.clone(),
        }
    }

    pub fn in_use(&self, key: &str) -> u64 {
        self.state
            .slots
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.sleeps.lock().unwrap().clone()
    }

    pub fn sent(&self) -> Vec<OutboundRequest> {
        self.state.sent.lock().unwrap().clone()
    }

    pub fn completed(&self) -> Vec<String> {
        self.state.completed.lock().unwrap().clone()
    }
}

/// A ready answer after `polls` pending polls (each wakes itself, like a timer firing).
struct Delayed<T> {
    polls: u32,
    value: Option<T>,
    url: String,
    completed: Arc<Mutex<Vec<String>>>,
}

impl<T: Unpin> Future for Delayed<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        if self.polls > 0 {
            self.polls -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let url = self.url.clone();
        self.completed.lock().unwrap().push(url);
        match self.value.take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

pub fn ok_json(body: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        reason: "OK".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_owned()),
    }
}

impl Io for FlowIo {
    async fn read_request_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }

    async fn read_response_body(&mut self, _ex: &mut Exchange) -> Result<(), PolicyError> {
        Ok(())
    }

    async fn forward(
        &mut self,
        ex: &mut Exchange,
        _options: &ForwardRequest,
    ) -> Result<(), PolicyError> {
        self.state.forwards.fetch_add(1, Ordering::SeqCst);
        self.state
            .forwarded_bodies
            .lock()
            .unwrap()
            .push(ex.request.body.clone().unwrap_or_default());
        let status = self
            .state
            .statuses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(200);
        let mut r = Response::new(StatusCode::from_u16(status).unwrap());
        r.body = Some(Bytes::from(format!("answer {status}")));
        ex.response = Some(r);
        Ok(())
    }

    async fn count(&mut self, key: &str, calls: u64, period: Duration, increment: u64) -> Decision {
        let mut map = self.state.counters.lock().unwrap();
        let used = map.entry(key.to_owned()).or_insert(0);
        if *used + increment > calls {
            return Decision {
                allowed: false,
                remaining: calls.saturating_sub(*used),
                retry_after: period,
            };
        }
        *used += increment;
        Decision {
            allowed: true,
            remaining: calls - *used,
            retry_after: period,
        }
    }

    async fn acquire(&mut self, key: &str, max: u64) -> Option<Slot> {
        let mut map = self.state.slots.lock().unwrap();
        let n = map.entry(key.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        self.state.most_in_use.fetch_max(*n, Ordering::SeqCst);
        Some(Slot::new(Held {
            key: key.to_owned(),
            slots: self.state.slots.clone(),
        }))
    }

    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<HttpResponse, PolicyError>> + Send + use<> {
        self.state.sent.lock().unwrap().push(request.clone());
        let answer = self.state.answer.lock().unwrap().clone();
        let value = match answer {
            Some(f) => f(&request),
            None => Ok(ok_json("{}")),
        };
        let polls = self
            .state
            .delays
            .lock()
            .unwrap()
            .get(&request.url)
            .copied()
            .unwrap_or(0);
        Delayed {
            polls,
            value: Some(value),
            url: request.url,
            completed: self.state.completed.clone(),
        }
    }

    fn send_detached(&mut self, request: OutboundRequest) {
        self.state.detached.lock().unwrap().push(request);
    }

    async fn sleep(&mut self, duration: Duration) {
        self.state.sleeps.lock().unwrap().push(duration);
    }
}
