/* Links the installed fedge-client and calls it: the package is usable. */
#include <stdio.h>
#include <string.h>

#include <fedge/client/c_api.h>

int main(void) {
  fedge_client* client = NULL;
  fedge_status status;
  if (fedge_version() / 10000 != FEDGE_C_API_VERSION_MAJOR) {
    fprintf(stderr, "library version %d does not match header %d\n", fedge_version(),
            FEDGE_C_API_VERSION);
    return 1;
  }
  if (fedge_client_create(&client) != FEDGE_OK) return 1;
  status = fedge_client_configure(client, "aggregator: localhost:7443\n");
  if (status != FEDGE_ERR_BAD_CONFIG || strstr(fedge_last_error(), "device_id") == NULL) {
    fprintf(stderr, "unexpected: %s: %s\n", fedge_status_name(status), fedge_last_error());
    return 1;
  }
  fedge_client_destroy(client);
  printf("fedge consumer ok: C API %d, a bad config says: %s\n", fedge_version(),
         fedge_last_error());
  return 0;
}
