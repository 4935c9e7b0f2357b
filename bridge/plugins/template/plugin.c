/* __NAME__: a ruview-bridge plugin (docs/plugins.md).
 *
 * setup_entry gets the config entry ({"entry_id","domain","title","data","options","version"});
 * receive_event gets what the manifest subscribes to: "state_changed" for
 * subscribed_state_entities, each event type in subscribed_events, "mqtt_message" for
 * subscriptions. Every host import answers a code (RV_OK, RV_DENIED ...), see ruview_plugin.h.
 */
#include "ruview_plugin.h"

RV_EXPORT(setup_entry) int32_t setup_entry(const char *entry, int32_t len) {
  (void)entry; (void)len;
  rv_log(RV_INFO, "__NAME__ ready");
  return RV_OK;
}

RV_EXPORT(receive_event) int32_t receive_event(const char *type, int32_t type_len, const char *data, int32_t len) {
  rv_span event = {data, len};
  if (!rv_eq(type, type_len, "state_changed")) return RV_OK;
  rv_span state = rv_get(rv_get(event, "new_state"), "state");
  if (rv_is(state, "\"on\"")) rv_log(RV_INFO, "something turned on");
  return RV_OK;
}

RV_EXPORT(call_service_handler) int32_t call_service_handler(const char *domain, int32_t domain_len,
                                                            const char *service, int32_t service_len,
                                                            const char *data, int32_t len) {
  (void)domain; (void)domain_len; (void)service; (void)service_len; (void)data; (void)len;
  return RV_NOT_FOUND;
}
