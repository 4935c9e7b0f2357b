/* presence-lights: a room's light follows its presence.
 *
 * Config entry data: {"lights": {"<room>": "<light entity id>", ...}, "off_delay_s": 120}.
 * When binary_sensor.<node>_presence turns on, the light of the node's room (the state's `room`
 * attribute) gets light.turn_on; once presence has been off for off_delay_s, light.turn_off (only
 * for a light it turned on itself).
 * Time comes from the host's time_changed event (once a second).
 */
#include "ruview_plugin.h"

#define MAX_ROOMS 16
#define NAME_MAX 128

static char config[8192];
static int32_t config_len;
static double off_delay = 120, now;

static struct room { char name[NAME_MAX]; int32_t name_len; int lit; double off_at; } rooms[MAX_ROOMS];
static int32_t room_count;

static struct room *room_named(rv_span name) {
  if (name.n <= 0 || name.n >= NAME_MAX) return 0;
  for (int32_t i = 0; i < room_count; i++)
    if (rooms[i].name_len == name.n && rv_same(rooms[i].name, name.p, name.n)) return &rooms[i];
  if (room_count == MAX_ROOMS) return 0;
  struct room *r = &rooms[room_count++];
  rv_copy(r->name, name.p, name.n);
  r->name_len = name.n;
  r->lit = 0;
  r->off_at = 0;
  return r;
}

/* The light of a room, from the config entry's "lights" object. */
static rv_span light_of(struct room *r) {
  rv_span data = {config, config_len}, lights = rv_get(data, "lights");
  char key[NAME_MAX + 1];
  rv_copy(key, r->name, r->name_len);
  key[r->name_len] = 0;
  return rv_str(rv_get(lights, key));
}

static int32_t light_service(struct room *r, const char *service) {
  rv_span light = light_of(r);
  if (!light.n) return RV_NOT_FOUND;
  char body[NAME_MAX + 32];
  int32_t at = 0;
  if (!rv_puts(body, sizeof body, &at, "{\"entity_id\":\"") || !rv_put(body, sizeof body, &at, light.p, light.n) ||
      !rv_puts(body, sizeof body, &at, "\"}"))
    return RV_INVALID;
  return hc_service_call("light", 5, service, rv_strlen(service), body, at);
}

RV_EXPORT(setup_entry) int32_t setup_entry(const char *entry, int32_t len) {
  rv_span e = {entry, len}, data = rv_get(e, "data");
  if (!data.n || data.n > (int32_t)sizeof config) { rv_log(RV_ERROR, "config entry data missing or too long"); return RV_INVALID; }
  rv_copy(config, data.p, data.n);
  config_len = data.n;
  double delay;
  if (rv_num(rv_get(data, "off_delay_s"), &delay) && delay >= 0) off_delay = delay;
  rv_log(RV_INFO, "presence-lights ready");
  return RV_OK;
}

RV_EXPORT(receive_event) int32_t receive_event(const char *type, int32_t type_len, const char *data, int32_t len) {
  rv_span event = {data, len};
  if (rv_eq(type, type_len, "time_changed")) {
    rv_num(rv_get(event, "now"), &now);
    for (int32_t i = 0; i < room_count; i++)
      if (rooms[i].off_at > 0 && now >= rooms[i].off_at) {
        rooms[i].off_at = 0;
        rooms[i].lit = 0;
        light_service(&rooms[i], "turn_off");
      }
    return RV_OK;
  }
  if (!rv_eq(type, type_len, "state_changed")) return RV_OK;
  rv_span entity = rv_str(rv_get(event, "entity_id"));
  if (!rv_ends_with(entity.p, entity.n, "_presence")) return RV_OK;
  rv_span state = rv_get(event, "new_state");
  rv_span value = rv_get(state, "state"), room_name = rv_str(rv_get(rv_get(state, "attributes"), "room"));
  struct room *r = room_named(room_name);
  if (!r) return RV_OK;
  if (rv_is(value, "\"on\"")) {
    r->off_at = 0;
    r->lit = 1;
    return light_service(r, "turn_on");
  }
  /* only a light this plugin turned on goes off again, once presence has cleared */
  if (rv_is(value, "\"off\"") && r->lit && r->off_at == 0) r->off_at = (now > 0 ? now : 1) + off_delay;
  return RV_OK;
}

RV_EXPORT(call_service_handler) int32_t call_service_handler(const char *d, int32_t dl, const char *s, int32_t sl,
                                                            const char *data, int32_t len) {
  (void)d; (void)dl; (void)s; (void)sl; (void)data; (void)len;
  return RV_NOT_FOUND;
}
