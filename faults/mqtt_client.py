"""A plain MQTT 5 client (paho), for what the real publisher would never send: another
device's topic, a wrong secret, a hostile payload. The tests and the bridge_kills scenario
use it."""

from local import stack


class MqttClient:
    """Records the CONNACK, each SUBACK's and PUBACK's reason codes, the messages and disconnects."""

    def __init__(self, broker, username: str, secret: str, client_id: str = None):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.connack, self.pubacks, self.subacks, self.messages, self.disconnects = None, {}, {}, [], []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=paho.MQTTv5)
        self.client.username_pw_set(username, secret)
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connack", rc)
        self.client.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(mid, codes)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(rc)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        stack.wait_for(lambda: self.connack is not None or self.disconnects, 10, what="a CONNACK")

    def subscribe(self, topic_filter: str):
        """The SUBACK's reason code. Waited for: a message published before the broker has the
        subscription is not delivered (the publisher's PUBACK says "No matching subscribers")."""
        mid = self.client.subscribe(topic_filter, qos=1)[1]
        stack.wait_for(lambda: mid in self.subacks or self.disconnects, 10, what="a SUBACK")
        return self.subacks.get(mid, [None])[0]

    def publish(self, topic: str, payload: bytes):
        """The PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        stack.wait_for(lambda: mid in self.pubacks or self.disconnects, 10, what="a PUBACK")
        return self.pubacks.get(mid)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
