//! A real OTLP/gRPC trace receiver: a `TraceService` server inside the
//! test that keeps what the services export.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

use crate::listener;

/// One exported span: the service that sent it and its identity.
#[derive(Clone, Debug)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Every export request as received, in `Debug` form.
    dumps: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.dumps.lock().unwrap().push(format!("{request:?}"));
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for s in scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace_id: s.trace_id,
                        span_id: s.span_id,
                        parent_span_id: s.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts the receiver on a free port; returns its endpoint URL.
    pub async fn start(&self) -> String {
        let listener = listener().await;
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Every export request received so far, each in `Debug` form: all
    /// the spans with their attributes and events.
    pub fn dumps(&self) -> Vec<String> {
        self.dumps.lock().unwrap().clone()
    }

    /// A span of `child_service` whose parent is a span of `parent_service`
    /// in the same trace, with the names of both.
    pub fn linked(&self, parent_service: &str, child_service: &str) -> Option<(Span, Span)> {
        let spans = self.spans();
        let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
        spans.iter().filter(|s| s.service == child_service).find_map(|child| {
            let parent = by_id.get(child.parent_span_id.as_slice())?;
            (parent.service == parent_service && parent.trace_id == child.trace_id)
                .then(|| ((*parent).clone(), child.clone()))
        })
    }
}
