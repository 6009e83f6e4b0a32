/* Compiled as C99 (-pedantic-errors): proves fedge/client/c_api.h is C, and
 * that a C program can create, misconfigure and destroy a client. */
#include <stdio.h>
#include <string.h>

#include "fedge/client/c_api.h"

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              fedge_last_error());                                                             \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

static int read_batch(void* user, const int64_t* indices, size_t count, float* features,
                      int32_t* labels) {
  (void)user;
  (void)indices;
  (void)count;
  (void)features;
  (void)labels;
  return 0;
}

int main(void) {
  fedge_client* client = NULL;
  fedge_data_source source;
  fedge_model_info info;
  CHECK(fedge_version() == FEDGE_C_API_VERSION);
  CHECK(fedge_client_create(&client) == FEDGE_OK);
  CHECK(client != NULL);
  CHECK(fedge_client_configure(client, "threads: 0") == FEDGE_ERR_BAD_CONFIG);
  CHECK(strstr(fedge_last_error(), "'threads'") != NULL);
  source.num_examples = 10;
  source.example_size = 4;
  source.num_classes = 2;
  source.read_batch = read_batch;
  source.user_data = NULL;
  CHECK(fedge_client_set_data_source(client, &source) == FEDGE_OK);
  CHECK(fedge_client_run_task(client, 0) == FEDGE_ERR_STATE);
  CHECK(fedge_client_model_info(client, &info) == FEDGE_ERR_NO_MODEL);
  CHECK(strcmp(fedge_status_name(FEDGE_ERR_NO_MODEL), "FEDGE_ERR_NO_MODEL") == 0);
  fedge_client_destroy(client);
  CHECK(fedge_client_run_task(client, 0) == FEDGE_ERR_INVALID_HANDLE);
  fedge_client_destroy(NULL);
  printf("c_api_c_test: ok\n");
  return 0;
}
