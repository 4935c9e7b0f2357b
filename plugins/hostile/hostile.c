/* The hostile corpus: plugins that misbehave on purpose, one per -D flag, for the tests.
 *
 *   HOSTILE_LOOP        receive_event never returns (fuel and the epoch deadline end it)
 *   HOSTILE_GROW        receive_event grows memory until the limit says no, then traps
 *   HOSTILE_OOB         hands the host pointers outside its memory, then reads outside it
 *   HOSTILE_UNDECLARED  imports hc_mqtt_publish without declaring it (refused at load)
 *   HOSTILE_OVERREACH   writes a state its manifest grants no permission for
 *   HOSTILE_TRAP        traps in setup_entry
 *   HOSTILE_FLOOD       publishes 100,000 messages from one event
 */
#include "ruview_plugin.h"

static int32_t events;

RV_EXPORT(setup_entry) int32_t setup_entry(const char *entry, int32_t len) {
  (void)entry; (void)len;
#ifdef HOSTILE_TRAP
  __builtin_trap();
#endif
  return RV_OK;
}

RV_EXPORT(receive_event) int32_t receive_event(const char *type, int32_t type_len, const char *data, int32_t len) {
  (void)type; (void)type_len; (void)data; (void)len;
  events++;
#ifdef HOSTILE_LOOP
  volatile int32_t spin = 1;
  while (spin) events++;
#endif
#ifdef HOSTILE_GROW
  while (__builtin_wasm_memory_grow(0, 16) != (size_t)-1) events++;
  __builtin_trap();
#endif
#ifdef HOSTILE_OOB
  int32_t a = hc_log(RV_INFO, (const char *)0xFFFFFF00u, 4096);
  int32_t b = hc_state_set("sensor.x", 8, (const char *)16, 0x7FFFFFFF, "{}", 2);
  int32_t c = hc_state_get("sensor.x", 8, (char *)0xFFFFFFF0u, 4096);
  if (a != RV_BAD_POINTER || b != RV_BAD_POINTER || c != RV_BAD_POINTER) return 1;
  return *(volatile int32_t *)0xFFFFFFF0u;
#endif
#ifdef HOSTILE_UNDECLARED
  hc_mqtt_publish("x", 1, "y", 1, 0, 0);
#endif
#ifdef HOSTILE_OVERREACH
  return hc_state_set("lock.front_door", 15, "unlocked", 8, "{}", 2);
#endif
#ifdef HOSTILE_FLOOD
  int32_t refused = 0;
  for (int32_t i = 0; i < 100000; i++)
    if (hc_mqtt_publish("ruview/plugin/hostile_flood/spam", 32, "x", 1, 0, 0) == RV_RATE_LIMITED) refused++;
  return refused;
#endif
  return RV_OK;
}

RV_EXPORT(call_service_handler) int32_t call_service_handler(const char *d, int32_t dl, const char *s, int32_t sl,
                                                            const char *data, int32_t len) {
  (void)d; (void)dl; (void)s; (void)sl; (void)data; (void)len;
  return RV_NOT_FOUND;
}
