"""The 一卡通 service zone (服务专区): the directory of applications and institutions, its public
API and page, and the signed feed each province publishes and its peers aggregate."""
