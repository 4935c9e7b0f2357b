/* threshold-alert: a binary sensor that is on while a sensor is high (with hysteresis).
 *
 * Config entry data: {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
 *                     "alert": "binary_sensor.hall_too_warm", "name": "Hall too warm"}.
 * Above `high` the alert turns on, below `low` off; between the two it keeps its state. The
 * alert is announced to Home Assistant (hc_entity_register) at setup.
 */
#include "ruview_plugin.h"

#define ID_MAX 256

static char sensor[ID_MAX], alert[ID_MAX];
static int32_t sensor_len, alert_len;
static double high, low;
static int on = -1; /* unknown */

static int copy_str(rv_span data, const char *key, char *out, int32_t *out_len) {
  rv_span s = rv_str(rv_get(data, key));
  if (!s.n || s.n >= ID_MAX) return 0;
  rv_copy(out, s.p, s.n);
  *out_len = s.n;
  return 1;
}

static int32_t set_alert(int value) {
  static const char attrs[] = "{\"device_class\":\"problem\"}";
  on = value;
  return hc_state_set(alert, alert_len, value ? "on" : "off", value ? 2 : 3, attrs, sizeof attrs - 1);
}

RV_EXPORT(setup_entry) int32_t setup_entry(const char *entry, int32_t len) {
  rv_span e = {entry, len}, data = rv_get(e, "data");
  if (!copy_str(data, "sensor", sensor, &sensor_len) || !copy_str(data, "alert", alert, &alert_len) ||
      !rv_num(rv_get(data, "high"), &high) || !rv_num(rv_get(data, "low"), &low) || low > high) {
    rv_log(RV_ERROR, "config entry data needs sensor, alert, and numbers high >= low");
    return RV_INVALID;
  }
  char config[2 * ID_MAX + 96];
  int32_t at = 0;
  rv_span name = rv_str(rv_get(data, "name"));
  rv_puts(config, sizeof config, &at, "{\"entity_id\":\"");
  rv_put(config, sizeof config, &at, alert, alert_len);
  rv_puts(config, sizeof config, &at, "\",\"device_class\":\"problem\"");
  if (name.n && name.n < ID_MAX) {
    rv_puts(config, sizeof config, &at, ",\"name\":\"");
    rv_put(config, sizeof config, &at, name.p, name.n);
    rv_puts(config, sizeof config, &at, "\"");
  }
  rv_puts(config, sizeof config, &at, "}");
  return hc_entity_register(config, at);
}

RV_EXPORT(receive_event) int32_t receive_event(const char *type, int32_t type_len, const char *data, int32_t len) {
  if (!rv_eq(type, type_len, "state_changed")) return RV_OK;
  rv_span event = {data, len}, entity = rv_str(rv_get(event, "entity_id"));
  if (entity.n != sensor_len || !rv_same(entity.p, sensor, sensor_len)) return RV_OK;
  double value;
  if (!rv_num(rv_get(rv_get(event, "new_state"), "state"), &value)) return RV_OK; /* unavailable, unknown */
  if (value > high && on != 1) return set_alert(1);
  if (value < low && on != 0) return set_alert(0);
  return RV_OK;
}

RV_EXPORT(call_service_handler) int32_t call_service_handler(const char *d, int32_t dl, const char *s, int32_t sl,
                                                            const char *data, int32_t len) {
  (void)d; (void)dl; (void)data; (void)len;
  if (rv_eq(s, sl, "reset")) { on = -1; return RV_OK; }
  return RV_NOT_FOUND;
}
