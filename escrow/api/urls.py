from django.urls import path

from escrow.api import views

ORDER = "orders/<str:order_id>"
MILESTONE = f"{ORDER}/milestones/<str:ref>"
DISPUTE = "disputes/<str:dispute_id>"

urlpatterns = [
    path("orders", views.OrderListCreateApi.as_view(), name="order-list"),
    path(ORDER, views.OrderDetailApi.as_view(), name="order-detail"),
    path(f"{ORDER}/reserve", views.OrderReserveApi.as_view(), name="order-reserve"),
    path(f"{ORDER}/cancel", views.OrderCancelApi.as_view(), name="order-cancel"),
    path(f"{ORDER}/escrow", views.OrderEscrowApi.as_view(), name="order-escrow"),
    path(f"{ORDER}/escrow/fund", views.OrderEscrowFundApi.as_view(), name="order-escrow-fund"),
    path(f"{ORDER}/milestones", views.OrderMilestonesApi.as_view(), name="order-milestones"),
    path(f"{MILESTONE}/complete", views.MilestoneCompleteApi.as_view(), name="milestone-complete"),
    path(f"{MILESTONE}/approve", views.MilestoneApproveApi.as_view(), name="milestone-approve"),
    path(f"{ORDER}/resolution/release", views.ReleaseApi.as_view(), name="order-release"),
    path(f"{ORDER}/resolution/refund", views.RefundApi.as_view(), name="order-refund"),
    path(f"{ORDER}/resolution/dispute", views.OpenDisputeApi.as_view(), name="order-dispute"),
    path("disputes", views.DisputeListApi.as_view(), name="dispute-list"),
    path(DISPUTE, views.DisputeDetailApi.as_view(), name="dispute-detail"),
    path(f"{DISPUTE}/assign", views.DisputeAssignApi.as_view(), name="dispute-assign"),
    path(f"{DISPUTE}/resolve", views.DisputeResolveApi.as_view(), name="dispute-resolve"),
]
