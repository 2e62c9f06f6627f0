package webhookserver

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The webhook metrics of controller-runtime's server
// (sigs.k8s.io/controller-runtime/pkg/webhook/internal/metrics, which cannot be
// imported from outside controller-runtime), with the same names, help and
// buckets. That package registers them on metrics.Registry when
// controller-runtime's webhook package is imported, which this package does;
// registering them again yields the collectors already registered, so the
// series are the same whichever server counts.
var (
	requestLatency = registered(prometheus.NewHistogramVec(
		prometheus.HistogramOpts{
			Name:                            "controller_runtime_webhook_latency_seconds",
			Help:                            "Histogram of the latency of processing admission requests",
			Buckets:                         prometheus.ExponentialBuckets(10e-9, 10, 12),
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: 1 * time.Hour,
		},
		[]string{"webhook"},
	))
	requestTotal = registered(prometheus.NewCounterVec(
		prometheus.CounterOpts{
			Name: "controller_runtime_webhook_requests_total",
			Help: "Total number of admission requests by HTTP status code.",
		},
		[]string{"webhook", "code"},
	))
	requestInFlight = registered(prometheus.NewGaugeVec(
		prometheus.GaugeOpts{
			Name: "controller_runtime_webhook_requests_in_flight",
			Help: "Current number of admission requests being served.",
		},
		[]string{"webhook"},
	))
)

// registered registers c on controller-runtime's registry, or returns the
// collector of the same description registered before.
func registered[C prometheus.Collector](c C) C {
	err := metrics.Registry.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// instrument is controller-runtime's metrics.InstrumentedHook: latency, count by
// HTTP status and in-flight gauge of the webhook at path.
func instrument(path string, h http.Handler) http.Handler {
	lbl := prometheus.Labels{"webhook": path}
	cnt := requestTotal.MustCurryWith(lbl)
	// The most likely status codes, at zero from the start.
	cnt.WithLabelValues("200")
	cnt.WithLabelValues("500")
	return promhttp.InstrumentHandlerDuration(
		requestLatency.MustCurryWith(lbl),
		promhttp.InstrumentHandlerCounter(cnt, promhttp.InstrumentHandlerInFlight(requestInFlight.With(lbl), h)),
	)
}

// MetricsHandler serves controller-runtime's registry at /metrics, as its
// metrics server does.
func MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	return mux
}
