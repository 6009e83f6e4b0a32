/*
 * device_app: a device app in plain C that embeds fedge through its C API.
 *
 * It keeps its own data (an IDX shard, e.g. Fashion-MNIST images), serves it
 * to fedge one batch at a time through a callback, takes part in a
 * federation over TLS, trains only when its policy allows, and classifies a
 * held-out part of its data with the model the federation sent.
 *
 *   device_app --config device.yaml --images train-images-idx3-ubyte \
 *              --labels train-labels-idx1-ubyte [--train 2000] [--test 1000] [--tasks 3]
 *
 * The IDX files are uncompressed (gunzip Debian's /usr/share/datasets/
 * fashion-mnist/*.gz first). Exit status 0 when every task went through.
 */
#define _POSIX_C_SOURCE 200809L /* getrusage */
#include <errno.h>
#include <sys/resource.h>

#include <fedge/client/c_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the app's data: an IDX shard, owned by the app ------------------------ */

typedef struct {
  uint8_t* pixels; /* count * example_size bytes */
  uint8_t* labels; /* count bytes */
  int64_t count;
  int64_t example_size; /* rows * cols */
  int64_t first;        /* this view covers examples [first, first + count) */
} Shard;

static uint32_t read_be32(FILE* f, int* ok) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) *ok = 0;
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Reads the first `limit` items of an IDX file (magic 0x801 labels or 0x803
 * images). Returns a malloc'ed buffer and sets *items and *item_size. */
static uint8_t* read_idx(const char* path, int64_t limit, int64_t* items, int64_t* item_size) {
  FILE* f = fopen(path, "rb");
  uint8_t* data = NULL;
  int ok = 1;
  uint32_t magic, n, dims, d;
  size_t size = 1;
  if (f == NULL) {
    fprintf(stderr, "device_app: cannot open %s: %s\n", path, strerror(errno));
    return NULL;
  }
  magic = read_be32(f, &ok);
  dims = magic & 0xff;
  if (!ok || (magic >> 8) != 0x08 || dims < 1 || dims > 3) {
    fprintf(stderr, "device_app: %s is not an uncompressed IDX file of bytes\n", path);
    fclose(f);
    return NULL;
  }
  n = read_be32(f, &ok);
  for (d = 1; d < dims; ++d) size *= read_be32(f, &ok);
  if (!ok || (int64_t)n < limit) {
    fprintf(stderr, "device_app: %s has %u items, %lld asked\n", path, n, (long long)limit);
    fclose(f);
    return NULL;
  }
  data = malloc((size_t)limit * size);
  if (data == NULL || fread(data, size, (size_t)limit, f) != (size_t)limit) {
    fprintf(stderr, "device_app: cannot read %s\n", path);
    free(data);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *items = limit;
  *item_size = (int64_t)size;
  return data;
}

/* Fashion-MNIST's pixel mean and standard deviation (what the federation's
 * model expects: (x / 255 - mean) / stddev). */
#define PIXEL_MEAN 0.2860f
#define PIXEL_STDDEV 0.3530f

static void to_features(const uint8_t* pixels, int64_t n, float* out) {
  int64_t i;
  for (i = 0; i < n; ++i) out[i] = ((float)pixels[i] / 255.0f - PIXEL_MEAN) / PIXEL_STDDEV;
}

/* fedge asks for one batch at a time: the examples at `indices` of the
 * training view, as floats in fedge's buffers. */
static int read_batch(void* user_data, const int64_t* indices, size_t count, float* features,
                      int32_t* labels) {
  const Shard* shard = (const Shard*)user_data;
  size_t i;
  for (i = 0; i < count; ++i) {
    const int64_t example = shard->first + indices[i];
    if (indices[i] < 0 || indices[i] >= shard->count) return 1; /* never happens */
    to_features(shard->pixels + example * shard->example_size, shard->example_size,
                features + (int64_t)i * shard->example_size);
    labels[i] = shard->labels[example];
  }
  return 0;
}

/* --- the app's training policy ---------------------------------------------- */

/* A real app would ask the OS: charging? unmetered network? screen off? Here
 * the "device" is unplugged for a short while during its first task: the
 * policy says no on its 5th to 7th answers, and fedge pauses training between
 * two batches until it says yes again. */
typedef struct {
  int answers;
  int pauses_seen;
} Policy;

static int may_train(void* user_data) {
  Policy* policy = (Policy*)user_data;
  policy->answers++;
  return policy->answers >= 5 && policy->answers <= 7 ? 0 : 1;
}

/* --- events ----------------------------------------------------------------- */

static const char* event_name(fedge_event_type type) {
  switch (type) {
    case FEDGE_EVENT_JOINED:
      return "joined";
    case FEDGE_EVENT_TRAINING_STARTED:
      return "training started";
    case FEDGE_EVENT_TRAINING_PAUSED:
      return "training paused";
    case FEDGE_EVENT_TRAINING_RESUMED:
      return "training resumed";
    case FEDGE_EVENT_BUDGET_LIMITED:
      return "budget limited";
    case FEDGE_EVENT_UPDATE_SENT:
      return "update sent";
    case FEDGE_EVENT_MODEL_UPDATED:
      return "model updated";
    case FEDGE_EVENT_DRIFT_DETECTED:
      return "drift detected";
    case FEDGE_EVENT_ERROR:
      return "error";
  }
  return "?";
}

static int on_event(void* user_data, const fedge_event* event) {
  Policy* policy = (Policy*)user_data;
  if (event->type == FEDGE_EVENT_TRAINING_PAUSED) policy->pauses_seen++;
  printf("event: %-16s round %llu, model v%llu: %s\n", event_name(event->type),
         (unsigned long long)event->round, (unsigned long long)event->model_version,
         event->message);
  fflush(stdout);
  return 0;
}

/* --- inference with the received model --------------------------------------- */

static double held_out_accuracy(fedge_client* client, const Shard* test) {
  enum { kBatch = 100 };
  float* features = malloc(sizeof(float) * kBatch * (size_t)test->example_size);
  int32_t predicted[kBatch];
  int64_t start, correct = 0;
  if (features == NULL) return -1.0;
  for (start = 0; start < test->count; start += kBatch) {
    const int64_t n = test->count - start < kBatch ? test->count - start : kBatch;
    int64_t i;
    to_features(test->pixels + (test->first + start) * test->example_size, n * test->example_size,
                features);
    if (fedge_client_predict(client, features, (size_t)n, NULL, predicted) != FEDGE_OK) {
      fprintf(stderr, "device_app: predict: %s\n", fedge_last_error());
      free(features);
      return -1.0;
    }
    for (i = 0; i < n; ++i) correct += predicted[i] == test->labels[test->first + start + i];
  }
  free(features);
  return (double)correct / (double)test->count;
}

/* The process's peak resident memory so far, in MiB (Linux: ru_maxrss is KiB). */
static double peak_rss_mib(void) {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1.0;
  return (double)usage.ru_maxrss / 1024.0;
}

static char* read_text(const char* path) {
  FILE* f = fopen(path, "rb");
  char* text;
  long size;
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  text = malloc((size_t)size + 1);
  if (text != NULL && fread(text, 1, (size_t)size, f) == (size_t)size) {
    text[size] = '\0';
  } else {
    free(text);
    text = NULL;
  }
  fclose(f);
  return text;
}

int main(int argc, char** argv) {
  const char *config_path = NULL, *images_path = NULL, *labels_path = NULL;
  int64_t train = 2000, test = 1000, items = 0, label_size = 0;
  int tasks = 3, t, i, rc = 1;
  Shard all, train_view, test_view;
  Policy policy = {0, 0};
  fedge_client* client = NULL;
  fedge_data_source source;
  fedge_model_info info;
  char* config = NULL;
  double before = -1.0, after;

  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--config") == 0)
      config_path = argv[i + 1];
    else if (strcmp(argv[i], "--images") == 0)
      images_path = argv[i + 1];
    else if (strcmp(argv[i], "--labels") == 0)
      labels_path = argv[i + 1];
    else if (strcmp(argv[i], "--train") == 0)
      train = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--test") == 0)
      test = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--tasks") == 0)
      tasks = atoi(argv[i + 1]);
  }
  if (config_path == NULL || images_path == NULL || labels_path == NULL || train < 1 || test < 1 ||
      tasks < 1) {
    fprintf(stderr,
            "usage: device_app --config FILE --images IDX --labels IDX [--train N] [--test N] "
            "[--tasks N]\n");
    return 2;
  }

  /* The app's data: `train` examples to learn from, then `test` held out. */
  memset(&all, 0, sizeof all);
  all.pixels = read_idx(images_path, train + test, &all.count, &all.example_size);
  all.labels = read_idx(labels_path, train + test, &items, &label_size);
  config = read_text(config_path);
  if (all.pixels == NULL || all.labels == NULL || label_size != 1) goto done;
  if (config == NULL) {
    fprintf(stderr, "device_app: cannot read %s\n", config_path);
    goto done;
  }
  train_view = all;
  train_view.count = train;
  test_view = all;
  test_view.first = train;
  test_view.count = test;

  if (fedge_client_create(&client) != FEDGE_OK ||
      fedge_client_configure(client, config) != FEDGE_OK) {
    fprintf(stderr, "device_app: %s\n", fedge_last_error());
    goto done;
  }
  printf("peak memory before training: %.1f MiB (libraries loaded, data read)\n",
         peak_rss_mib());
  source.num_examples = train_view.count;
  source.example_size = train_view.example_size;
  source.num_classes = 10;
  source.read_batch = read_batch;
  source.user_data = &train_view;
  if (fedge_client_set_data_source(client, &source) != FEDGE_OK ||
      fedge_client_set_policy(client, may_train, &policy) != FEDGE_OK ||
      fedge_client_set_event_callback(client, on_event, &policy) != FEDGE_OK) {
    fprintf(stderr, "device_app: %s\n", fedge_last_error());
    goto done;
  }

  for (t = 0; t < tasks; ++t) {
    fedge_status status = fedge_client_run_task(client, 300000);
    if (status != FEDGE_OK) {
      fprintf(stderr, "device_app: task %d: %s: %s\n", t + 1, fedge_status_name(status),
              fedge_last_error());
      goto done;
    }
    if (t == 0) before = held_out_accuracy(client, &test_view); /* the first model it got */
  }

  /* The federation published a model after this device's last task: fetch
   * it, then classify the held-out examples with it. */
  if (fedge_client_sync_model(client) != FEDGE_OK ||
      fedge_client_model_info(client, &info) != FEDGE_OK) {
    fprintf(stderr, "device_app: %s\n", fedge_last_error());
    goto done;
  }
  after = held_out_accuracy(client, &test_view);
  printf("policy: paused training %d time(s)\n", policy.pauses_seen);
  printf(
      "held-out accuracy: %.3f with the first model received, %.3f with model v%llu "
      "(%s, %lld parameters)\n",
      before, after, (unsigned long long)info.version, info.architecture,
      (long long)info.num_parameters);
  printf("peak memory after training: %.1f MiB\n", peak_rss_mib());
  rc = after >= 0.0 ? 0 : 1;

done:
  fedge_client_destroy(client);
  free(config);
  free(all.pixels);
  free(all.labels);
  return rc;
}
