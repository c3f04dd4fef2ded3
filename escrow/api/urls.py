from django.urls import path

from escrow.api import views

urlpatterns = [
    path("orders", views.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<str:order_id>", views.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<str:order_id>/reserve", views.OrderReserveApi.as_view(), name="order-reserve"),
    path("orders/<str:order_id>/cancel", views.OrderCancelApi.as_view(), name="order-cancel"),
    path(
        "orders/<str:order_id>/milestones",
        views.OrderMilestonesApi.as_view(),
        name="order-milestones",
    ),
]
