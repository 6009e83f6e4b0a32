/*
 * fedge C API: the stable surface of the fedge device library.
 *
 * An app embeds one fedge_client per federation it takes part in:
 *
 *   fedge_client* client;
 *   fedge_client_create(&client);
 *   fedge_client_configure(client, yaml_or_json);       (see "Configuration")
 *   fedge_client_set_data_source(client, &source);     (the app's examples)
 *   fedge_client_set_policy(client, may_train, app);   (optional)
 *   fedge_client_set_event_callback(client, on_event, app);   (optional)
 *   fedge_client_run_task(client, 0);                  (or start/stop/join)
 *   fedge_client_predict(client, features, n, logits, labels);
 *   fedge_client_destroy(client);
 *
 * Pure C99; no C++ exception ever leaves a fedge_ function.
 *
 * Errors: every function that can fail returns a fedge_status. FEDGE_OK is
 * 0; on any other code, fedge_last_error() returns a message saying what was
 * wrong (naming the config field, the callback, the step that failed).
 * The message is THREAD-LOCAL: it describes the last failing fedge_ call
 * made by the calling thread, and stays valid until that thread's next
 * failing fedge_ call.
 *
 * Handles: a fedge_client* is opaque. Functions given NULL, or a pointer that
 * is not a live handle (never created, or already destroyed), return
 * FEDGE_ERR_INVALID_HANDLE without touching it: the library keeps a table of
 * live handles and never dereferences an unknown one.
 *
 * Threading: every function may be called from any thread. Functions on
 * one handle take the handle's lock only briefly: a call that would change
 * the handle while a run (fedge_client_run_task or a background run) is in
 * progress returns FEDGE_ERR_STATE instead of waiting. fedge_client_stop
 * never waits. Callbacks run on the thread that trains (the caller of
 * fedge_client_run_task, or the background thread of fedge_client_start),
 * one at a time; from inside a callback the app may call fedge_client_stop,
 * fedge_client_model_info and fedge_client_predict on the same handle (the
 * other functions return FEDGE_ERR_STATE there; fedge_client_destroy must
 * not be called there). Different handles are independent. Each function's
 * comment repeats what applies to it.
 *
 * Ownership: the app owns its data and every buffer it passes in; the
 * library copies what it keeps (the config string, the data source struct)
 * and never holds on to a caller's buffer after the call returns, except
 * through the data source, which the library reads one batch at a time
 * while a task trains. Strings the library returns (fedge_last_error,
 * fedge_status_name, event messages, model_info.architecture) are owned by
 * the library; see each function for how long they live.
 */
#ifndef FEDGE_CLIENT_C_API_H_
#define FEDGE_CLIENT_C_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FEDGE_C_EXPORT __attribute__((visibility("default")))
#else
#define FEDGE_C_EXPORT
#endif

/* The API version this header declares: major * 10000 + minor * 100 + patch.
 * The major version changes only when the API or ABI breaks. */
#define FEDGE_C_API_VERSION_MAJOR 1
#define FEDGE_C_API_VERSION_MINOR 0
#define FEDGE_C_API_VERSION_PATCH 0
#define FEDGE_C_API_VERSION \
  (FEDGE_C_API_VERSION_MAJOR * 10000 + FEDGE_C_API_VERSION_MINOR * 100 + FEDGE_C_API_VERSION_PATCH)

typedef enum fedge_status {
  FEDGE_OK = 0,
  FEDGE_ERR_INVALID_ARGUMENT = 1, /* a NULL or out-of-range argument */
  FEDGE_ERR_INVALID_HANDLE = 2,   /* NULL or not a live fedge_client */
  FEDGE_ERR_BAD_CONFIG = 3,       /* the message names the field */
  FEDGE_ERR_STATE = 4,            /* not now: not configured, no data, running, ... */
  FEDGE_ERR_CALLBACK = 5,         /* an app callback failed; the message says which */
  FEDGE_ERR_UNAVAILABLE = 6,      /* the aggregator cannot be reached */
  FEDGE_ERR_REFUSED = 7,          /* the aggregator refused this device, or a model failed
                                     verification */
  FEDGE_ERR_TIMEOUT = 8,          /* the call's timeout ran out */
  FEDGE_ERR_NO_MODEL = 9,         /* no verified model yet */
  FEDGE_ERR_RESOURCE = 10,        /* a resource budget refused the work */
  FEDGE_ERR_CANCELLED = 11,       /* fedge_client_stop ended it */
  FEDGE_ERR_INTERNAL = 12         /* a bug or an unexpected failure inside fedge */
} fedge_status;

/* The library's runtime version, as FEDGE_C_API_VERSION. Thread-safe. */
FEDGE_C_EXPORT int fedge_version(void);

/* The fedge release this library belongs to ("1.0.0"), the same string every
 * fedge tool prints for --version. Never NULL; static storage. Thread-safe. */
FEDGE_C_EXPORT const char* fedge_client_version(void);

/* A constant name for `status` ("FEDGE_ERR_BAD_CONFIG"); "FEDGE_ERR_UNKNOWN"
 * for values outside the enum. Never NULL; static storage. Thread-safe. */
FEDGE_C_EXPORT const char* fedge_status_name(fedge_status status);

/* The message of the last failing fedge_ call on the calling thread ("" if
 * none failed yet). Never NULL. Valid until the calling thread's next
 * failing fedge_ call. Thread-safe (thread-local). */
FEDGE_C_EXPORT const char* fedge_last_error(void);

typedef struct fedge_client fedge_client;

/* Creates an unconfigured client in *out. FEDGE_ERR_INVALID_ARGUMENT if out
 * is NULL (then nothing is created). Thread-safe. */
FEDGE_C_EXPORT fedge_status fedge_client_create(fedge_client** out);

/* Stops a background run (as fedge_client_stop), waits for it to end and
 * frees the client. NULL or an unknown pointer: nothing happens. After it
 * returns, every function given `client` returns FEDGE_ERR_INVALID_HANDLE.
 * Must not be called from a callback of the same client, nor while another
 * thread is inside a function on it (e.g. a foreground run_task: stop and
 * let it return first). */
FEDGE_C_EXPORT void fedge_client_destroy(fedge_client* client);

/*
 * Configuration: a YAML or JSON document (JSON is YAML). Unknown keys are
 * errors (a typo must not silently drop a setting).
 *
 *   aggregator: localhost:7443       required: host:port; TLS names the host
 *   device_id: dev-1                 required: the certificate's CN or enrolled id
 *   pinned_key: certs/signing.pub    required: the aggregator's model-signing key;
 *                                    models it did not sign are refused
 *   state_dir: /data/fedge           required: pending updates (AES-256-GCM),
 *                                    their key, the current model
 *   tls:
 *     ca: certs/ca.pem               required unless insecure
 *     cert: certs/client-dev-1.pem   mutual TLS (with key) ...
 *     key: certs/client-dev-1.key
 *     token: ...                     ... or an enrollment token
 *     insecure: false                plaintext (tests against --insecure only)
 *   threads: 1                       LibTorch compute threads while training (>= 1)
 *   codec: fp32                      update codec (fp32, fp16, int8, qsgd, topk)
 *   poll_wait_ms: 5000               how long one task poll may wait (>= 1); also
 *                                    the worst-case delay of fedge_client_stop
 *   call_timeout_ms: 120000          deadline of every other call to the aggregator
 *   max_tasks: 0                     background run: stop after N tasks (0: until stopped)
 *   budget:
 *     max_training_memory_mb: 0      cap on training memory (0: none), see below
 *     max_task_seconds: 0            cap on active training time per task (0: none)
 *     policy_poll_ms: 1000           how often a paused task asks the policy again
 *   drift:
 *     detector: page-hinkley         watches the loss of the device's model on
 *                                    its examples after each task (adwin too;
 *                                    "none": off); its state is kept in
 *                                    state_dir across runs and restarts
 *
 * Budgets:
 *   Memory: before a task trains, the library measures one training step of
 *   the model (forward + backward on a batch of 1 and 2, every byte LibTorch
 *   allocates) and adds the task's state (global copy, delta, momentum). If
 *   the task's batch does not fit, it trains with the largest batch that
 *   does (FEDGE_EVENT_BUDGET_LIMITED); if a batch of 1 does not fit, the task
 *   is refused: the run ends with FEDGE_ERR_RESOURCE.
 *   Time: when a task's active training time (pauses excluded) reaches the
 *   budget, local training stops after the current batch and the steps done
 *   so far are submitted, weighted by the examples they saw
 *   (FEDGE_EVENT_BUDGET_LIMITED).
 *   Threads: `threads` LibTorch intra-op threads on the training thread.
 *
 * Returns FEDGE_ERR_BAD_CONFIG naming the field for a parse error, an unknown
 * key, a missing required key or a bad value, and for files (certificates,
 * keys) that cannot be read. FEDGE_ERR_STATE while a run is in progress.
 * May be called again to reconfigure (the previous config is replaced only
 * if the new one is valid). Serialized per handle.
 */
FEDGE_C_EXPORT fedge_status fedge_client_configure(fedge_client* client, const char* config);

/*
 * The app's examples. The library asks for one batch at a time: read_batch
 * must write `count` examples, those at `indices` (each in [0, num_examples)),
 * into `features` (count * example_size floats, example after example, in
 * the layout the model expects, e.g. 1x28x28 row-major for the cnn) and
 * `labels` (count class ids in [0, num_classes)). The buffers belong to the
 * library and are valid only during the call. Return 0 on success; any other
 * value ends the task: the run returns FEDGE_ERR_CALLBACK and
 * fedge_last_error() quotes the value. Labels out of range or non-finite
 * features end the task the same way. Called on the training thread.
 */
typedef struct fedge_data_source {
  int64_t num_examples; /* >= 1 */
  int64_t example_size; /* floats per example; must match the federation's model */
  int32_t num_classes;  /* must match the federation's model */
  int (*read_batch)(void* user_data, const int64_t* indices, size_t count, float* features,
                    int32_t* labels);
  void* user_data; /* passed back unchanged; owned by the app */
} fedge_data_source;

/* Copies *source (not what user_data points to, which must stay valid until
 * the source is replaced or the client destroyed). FEDGE_ERR_INVALID_ARGUMENT
 * for NULL, a missing read_batch or non-positive sizes; FEDGE_ERR_STATE while
 * running. Serialized per handle. */
FEDGE_C_EXPORT fedge_status fedge_client_set_data_source(fedge_client* client,
                                                         const fedge_data_source* source);

/* The app's training policy: may the device train now (charging, unmetered
 * network, idle)? Asked before every batch, so keep it cheap. Return 1: train;
 * 0: pause (training waits between two batches, asking again every
 * budget.policy_poll_ms, and resumes where it stopped); anything else is a
 * failure: the task is abandoned and the run returns FEDGE_ERR_CALLBACK. */
typedef int (*fedge_policy_fn)(void* user_data);

/* Sets (or with NULL clears: always train) the policy. FEDGE_ERR_STATE while
 * running. Serialized per handle. */
FEDGE_C_EXPORT fedge_status fedge_client_set_policy(fedge_client* client, fedge_policy_fn policy,
                                                    void* user_data);

typedef enum fedge_event_type {
  FEDGE_EVENT_JOINED = 1,           /* joined the federation; model_version: its latest */
  FEDGE_EVENT_TRAINING_STARTED = 2, /* a task's local training starts */
  FEDGE_EVENT_TRAINING_PAUSED = 3,  /* the policy said no */
  FEDGE_EVENT_TRAINING_RESUMED = 4, /* the policy said yes again */
  FEDGE_EVENT_BUDGET_LIMITED = 5,   /* a budget shrank the batch or ended training early */
  FEDGE_EVENT_UPDATE_SENT = 6,      /* value: the task's training loss */
  FEDGE_EVENT_MODEL_UPDATED = 7,    /* a newer verified model is used for predict */
  FEDGE_EVENT_DRIFT_DETECTED = 8,   /* the local loss drifted; reported to the aggregator */
  FEDGE_EVENT_ERROR = 9             /* a task failed; the run retries unless it ended */
} fedge_event_type;

typedef struct fedge_event {
  fedge_event_type type;
  uint64_t round; /* 0 when not about a round */
  uint64_t model_version;
  double value;        /* see the event type; 0 otherwise */
  const char* message; /* never NULL; valid during the callback only */
} fedge_event;

/* Receives events on the training thread. Return 0; any other value (or a
 * C++ exception from a C++ callback) stops the run, which then returns
 * FEDGE_ERR_CALLBACK naming the event. The event pointer is valid during the
 * call only. */
typedef int (*fedge_event_fn)(void* user_data, const fedge_event* event);

/* Sets (or with NULL clears) the event callback. FEDGE_ERR_STATE while
 * running. Serialized per handle. */
FEDGE_C_EXPORT fedge_status fedge_client_set_event_callback(fedge_client* client,
                                                            fedge_event_fn callback,
                                                            void* user_data);

/* Runs one federated task on the calling thread: joins (retrying while the
 * aggregator is unreachable), waits for a task, downloads and verifies the
 * model, trains on the data source under the budgets and policy, submits the
 * update (kept encrypted in state_dir and resent later if the aggregator is
 * away). Blocks until the update is sent, or `timeout_ms` (> 0; 0 = no
 * timeout) runs out (FEDGE_ERR_TIMEOUT), or fedge_client_stop
 * (FEDGE_ERR_CANCELLED). FEDGE_ERR_STATE if not configured, without a data
 * source, or while a run is in progress. */
FEDGE_C_EXPORT fedge_status fedge_client_run_task(fedge_client* client, int64_t timeout_ms);

/* Starts the same loop on a background thread, for max_tasks tasks (0:
 * until stopped). Returns at once; FEDGE_ERR_STATE as run_task. */
FEDGE_C_EXPORT fedge_status fedge_client_start(fedge_client* client);

/* Asks the current run (foreground or background) to stop: between batches,
 * while paused, or when the current poll returns (up to poll_wait_ms).
 * Returns at once; FEDGE_OK even when nothing runs. Never waits: callable
 * from any thread and from callbacks. */
FEDGE_C_EXPORT fedge_status fedge_client_stop(fedge_client* client);

/* Waits for the background run to end and returns its result: FEDGE_OK when
 * it finished its max_tasks tasks, FEDGE_ERR_CANCELLED when it was stopped,
 * otherwise the error that ended it. FEDGE_ERR_STATE if nothing was started
 * (or it was already joined). Serialized per handle. */
FEDGE_C_EXPORT fedge_status fedge_client_join(fedge_client* client);

/* Downloads the federation's latest model version, verifies it against the
 * pinned key and makes it the model predict uses (FEDGE_EVENT_MODEL_UPDATED,
 * on the calling thread, if it is newer). A task brings the model it trains
 * on; this fetches the one the federation published after the device's
 * last task. Blocks for at most call_timeout_ms per call to the aggregator.
 * FEDGE_ERR_STATE if not configured or while a run is in progress. */
FEDGE_C_EXPORT fedge_status fedge_client_sync_model(fedge_client* client);

/* Device certificates (docs/security.md). With `tls: {enroll: true, cert:
 * ..., key: ..., token: ...}` fedge_client_configure enrolls the device when
 * tls.cert does not exist yet: it makes tls.key (a PEM file, or an EC P-256
 * key on the PKCS#11 token a "pkcs11:" URI names), sends a certificate
 * request with the token and stores the certificate the aggregator's device
 * CA issues; the client then uses mutual TLS. fedge_client_enroll asks for a
 * new certificate now (e.g. before the old one expires), reusing the key,
 * and switches to it. FEDGE_ERR_STATE if not configured or while a run is
 * in progress; FEDGE_ERR_BAD_CONFIG without tls.cert, tls.key and
 * tls.token; FEDGE_ERR_REFUSED when the aggregator refuses (a wrong token,
 * a revoked device, no device CA). Blocks for at most call_timeout_ms. */
FEDGE_C_EXPORT fedge_status fedge_client_enroll(fedge_client* client);

typedef struct fedge_model_info {
  uint64_t version;     /* the model predict uses */
  int64_t example_size; /* floats per input example */
  int32_t num_classes;
  int64_t num_parameters;
  const char* architecture; /* "cnn", ...; valid until the next model update or destroy */
} fedge_model_info;

/* Describes the model predict uses. FEDGE_ERR_NO_MODEL before one was
 * received. Thread-safe with respect to a run of the same handle. */
FEDGE_C_EXPORT fedge_status fedge_client_model_info(fedge_client* client, fedge_model_info* out);

/* Runs the current model on `count` examples (count * example_size floats).
 * Writes count * num_classes logits to `logits` and/or count class ids to
 * `labels` (either may be NULL, not both). FEDGE_ERR_NO_MODEL before a model
 * was received. May run while a task trains (it uses its own copy of the
 * model), from any thread; concurrent predicts on one handle are
 * serialized. */
FEDGE_C_EXPORT fedge_status fedge_client_predict(fedge_client* client, const float* features,
                                                 size_t count, float* logits, int32_t* labels);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FEDGE_CLIENT_C_API_H_ */
